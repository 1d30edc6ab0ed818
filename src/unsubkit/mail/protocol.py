"""aiosmtpd's SMTP and LMTP protocol classes, with a cheaper envelope address parser.

aiosmtpd 1.4 defines a ``typing.Protocol`` class inside ``SMTP._getaddr``, so every MAIL and
RCPT command builds a new class, and then runs the stdlib's full RFC 5322 parser: together a
large share of the listener's CPU per message. :class:`CheapAddr` reads the common form
``<dot-atom@domain>`` with one regular expression and hands everything else (quoted local
parts, comments, source routes, ``<>``) to the same stdlib parser, so results are identical
(except that input the stdlib parser crashes on is a malformed address, not an exception).
"""

from __future__ import annotations

import re
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP

__all__ = ["CheapAddr", "MailtoLMTP", "MailtoSMTP"]


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE = re.compile(
    rf"[ \t]*<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)>[ \t]*(.*)", re.DOTALL)


class CheapAddr:
    local_part_limit: int = 0

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        if not arg:
            return "", ""
        simple = _SIMPLE.fullmatch(arg)
        if simple is not None and ".." not in simple.group(1):
            mailbox: str = simple.group(1)
            if self.local_part_limit and len(mailbox.rpartition("@")[0]) > self.local_part_limit:
                return None, None
            return mailbox, simple.group(2)
        address: Any
        try:
            if arg.lstrip().startswith("<"):
                address, rest = get_angle_addr(arg)
            else:
                address, rest = get_addr_spec(arg)
            addr: str = address.addr_spec
        except HeaderParseError:
            return None, None
        except Exception:  # noqa: BLE001 - the stdlib parser crashes on '"', 'a@', 'a@[' ...
            # "553 malformed address" for those too, not an internal error.
            return None, None
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, str(rest)


class MailtoSMTP(CheapAddr, SMTP):  # type: ignore[misc]
    pass


class MailtoLMTP(CheapAddr, LMTP):  # type: ignore[misc]
    pass
