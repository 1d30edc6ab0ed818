"""aiosmtpd's SMTP and LMTP protocol classes, with a cheaper envelope address parser.

aiosmtpd 1.4 defines a ``typing.Protocol`` class inside ``SMTP._getaddr``, so every MAIL and
RCPT command builds a new class (about a tenth of a millisecond each): a measurable share of
the listener's CPU per message. :class:`CheapAddr` keeps the parsing (the stdlib's RFC 5322
``angle-addr`` / ``addr-spec`` parser) and the local-part limit, without the class.
"""

from __future__ import annotations

from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP

__all__ = ["CheapAddr", "MailtoLMTP", "MailtoSMTP"]


class CheapAddr:
    local_part_limit: int = 0

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        if not arg:
            return "", ""
        address: Any
        try:
            if arg.lstrip().startswith("<"):
                address, rest = get_angle_addr(arg)
            else:
                address, rest = get_addr_spec(arg)
        except HeaderParseError:
            return None, None
        addr: str = address.addr_spec
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, str(rest)


class MailtoSMTP(CheapAddr, SMTP):  # type: ignore[misc]
    pass


class MailtoLMTP(CheapAddr, LMTP):  # type: ignore[misc]
    pass
