"""``prepare``: one recipient's message, ready to send, from the library facade.

Unsubscribe tokens are **per recipient**: the token in ``List-Unsubscribe`` and in the body
link unsubscribes exactly one address. A message prepared for Alice and also delivered to Bob
would let Bob unsubscribe Alice. Hence:

* :func:`prepare` takes exactly one recipient (``to``); several — a list, or a string naming
  more than one address — is an error, and so is commercial mail whose To/Cc name several
  addresses;
* :func:`prepare_each` makes one copy per recipient (by default the message's To, Cc and Bcc
  addresses) and yields ``(recipient, bytes)``; send each copy to its recipient only.

Keys are read from the data dir once per :class:`Preparer` (or per :func:`prepare` call).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from email.message import EmailMessage, Message
from email.utils import getaddresses, make_msgid

from .dkim import DKIMSigner
from .dkimkeys import signers_for_brand
from .errors import MessageError
from .message import Footer, parse_message, prepare_message, serialize
from .message import recipients as named_recipients
from .service import HeaderResult, Unsubkit
from .settings import DEFAULT_BRAND

__all__ = ["Preparer", "prepare", "prepare_each"]


def _one_address(to: object) -> str:
    if not isinstance(to, str):
        raise MessageError(
            "prepare() takes one recipient: unsubscribe tokens are per recipient; "
            "use prepare_each() for several"
        )
    found = [addr for _, addr in getaddresses([to]) if addr]
    if len(found) > 1:
        raise MessageError(
            f"prepare() takes one recipient, got {len(found)}: unsubscribe tokens are per "
            "recipient; use prepare_each() (CLI: run prepare once per --to)"
        )
    return found[0] if found else to.strip()


def _from_domain(msg: Message) -> str | None:
    found = getaddresses([str(v) for v in msg.get_all("From") or []])
    addr = next((a for _, a in found if "@" in a), None)
    return addr.rpartition("@")[2] if addr else None


class Preparer:
    """Prepares messages with one facade; DKIM keys are loaded once per brand."""

    def __init__(self, kit: Unsubkit) -> None:
        self.kit = kit
        self._signers: dict[str, list[DKIMSigner]] = {}

    def signers(self, brand: str) -> list[DKIMSigner]:
        got = self._signers.get(brand)
        if got is None:
            got = self._signers[brand] = signers_for_brand(
                self.kit.settings, brand, clock=self.kit.clock
            )
        return got

    def _message_id(self, msg: EmailMessage, message_id: str | None) -> tuple[str, str | None]:
        """(id the token records, id to add to the message when it has none)."""
        existing = msg.get("Message-ID")
        if existing:
            return message_id or str(existing).strip(), None
        new = message_id or make_msgid(domain=_from_domain(msg))
        return new, new

    def _build(
        self,
        msg: EmailMessage,
        result: HeaderResult,
        add_id: str | None,
    ) -> bytes:
        brand = self.kit.settings.brand(result.brand)
        return prepare_message(
            msg,
            headers=result.headers,
            body_url=result.body_url,
            footer=Footer.from_brand(brand),
            signers=self.signers(result.brand),
            date=self.kit.clock(),
            message_id=add_id,
        )

    def prepare(
        self,
        message: EmailMessage | Message | bytes,
        *,
        to: str,
        purpose: str | int,
        topic: str | int | None = None,
        brand: str | None = None,
        message_id: str | None = None,
    ) -> bytes:
        """The message for the single recipient ``to`` (see the module docstring)."""
        address = _one_address(to)
        msg = parse_message(message)
        token_id, add_id = self._message_id(msg, message_id)
        result = self.kit.headers_for(
            address, purpose, topic, brand=brand or DEFAULT_BRAND, message_id=token_id
        )
        if result.headers is not None:
            named = named_recipients(msg)
            if len(named) > 1:
                raise MessageError(
                    f"the message is addressed to {len(named)} recipients (To/Cc) but "
                    "unsubscribe tokens are per recipient: use prepare_each() to make one "
                    "copy per recipient"
                )
        return self._build(msg, result, add_id)

    def prepare_each(
        self,
        message: EmailMessage | Message | bytes,
        recipients: Iterable[str] | None = None,
        *,
        purpose: str | int,
        topic: str | int | None = None,
        brand: str | None = None,
        message_id: str | None = None,
    ) -> Iterator[tuple[str, bytes]]:
        """One copy per recipient, each with that recipient's own token.

        ``recipients`` defaults to the addresses in To, Cc and Bcc. The visible To/Cc
        fields are left as they are; Bcc is removed from every copy.
        """
        base = parse_message(message)
        # Every copy is the same message: one Message-ID, also recorded in each token.
        token_id, add_id = self._message_id(base, message_id)
        targets = (
            list(recipients) if recipients is not None
            else named_recipients(base, include_bcc=True)
        )
        if not targets:
            raise MessageError("no recipients: the message has no To, Cc or Bcc addresses")
        raw = serialize(base)
        for to in targets:
            address = _one_address(to)
            result = self.kit.headers_for(
                address, purpose, topic, brand=brand or DEFAULT_BRAND, message_id=token_id
            )
            yield address, self._build(parse_message(raw), result, add_id)


def prepare(
    kit: Unsubkit,
    message: EmailMessage | Message | bytes,
    *,
    to: str,
    purpose: str | int,
    topic: str | int | None = None,
    brand: str | None = None,
    message_id: str | None = None,
) -> bytes:
    """One recipient's copy of ``message``, ready to send: fields, body link, DKIM.

    Tokens are per recipient: pass exactly one address as ``to``; for several, use
    :func:`prepare_each`.
    """
    return Preparer(kit).prepare(
        message, to=to, purpose=purpose, topic=topic, brand=brand, message_id=message_id
    )


def prepare_each(
    kit: Unsubkit,
    message: EmailMessage | Message | bytes,
    recipients: Iterable[str] | None = None,
    *,
    purpose: str | int,
    topic: str | int | None = None,
    brand: str | None = None,
    message_id: str | None = None,
) -> Iterator[tuple[str, bytes]]:
    """One ``(recipient, bytes)`` per recipient, each copy carrying its own token."""
    return Preparer(kit).prepare_each(
        message, recipients, purpose=purpose, topic=topic, brand=brand, message_id=message_id
    )
