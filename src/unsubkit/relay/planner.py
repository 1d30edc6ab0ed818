"""From one submitted transaction to the copies to forward (blocking: the store and DKIM).

The message's ``X-Unsubkit-*`` fields name purpose, topic and brand and are removed; each
envelope recipient is checked with :meth:`Unsubkit.can_send`; the allowed ones get their own
copy from :class:`~unsubkit.prepare.Preparer` (tokens are per recipient: headers, body link,
DKIM signature; transactional mail is signed only). Run it in a worker thread.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses

from ..errors import MessageError
from ..message import parse_message
from ..prepare import Preparer
from ..service import Unsubkit
from ..settings import DEFAULT_BRAND
from .policy import read_control, strip_control

__all__ = ["Plan", "Planner"]


@dataclass(frozen=True, slots=True)
class Plan:
    purpose: str
    commercial: bool
    brand: str
    #: ``(envelope recipient, prepared bytes)``, one per allowed recipient.
    copies: list[tuple[str, bytes]] = field(default_factory=list)
    #: ``(envelope recipient, reason)`` for recipients that opted out.
    suppressed: list[tuple[str, str]] = field(default_factory=list)
    #: ``X-Unsubkit-*`` fields removed from the message.
    stripped: int = 0


def _from_domain(msg: Message) -> str | None:
    found = getaddresses([str(v) for v in msg.get_all("From") or []])
    addr = next((a for _, a in found if "@" in a), None)
    return addr.rpartition("@")[2].lower() if addr else None


class Planner:
    def __init__(self, kit: Unsubkit, *, default_purpose: str | None = None,
                 default_brand: str | None = None) -> None:
        self.kit = kit
        self.preparer = Preparer(kit)
        self.default_purpose = default_purpose
        self.default_brand = default_brand

    def _brand(self, msg: Message, asked: str | None) -> str:
        if asked:
            return asked
        if self.default_brand:
            return self.default_brand
        domain = _from_domain(msg)
        return (self.kit.settings.brand_for_domain(domain) if domain else None) or DEFAULT_BRAND

    def plan(self, data: bytes, recipients: Sequence[str], *, key: str,
             skip: Collection[str] = ()) -> Plan:
        """The copies for ``recipients`` (minus ``skip``, lower-cased ones already sent).

        ``key`` identifies the transaction; a message without ``Message-ID`` gets one derived
        from it, so a retried transaction carries the same id as its first copies.
        Raises :class:`~unsubkit.errors.UnsubkitError` subclasses (the handler maps them).
        """
        msg = parse_message(data)
        control = read_control(msg)
        stripped = strip_control(msg)
        purpose_name = control.purpose or self.default_purpose
        if purpose_name is None:
            raise MessageError(
                "no X-Unsubkit-Purpose field and no default purpose (relay_default_purpose)"
            )
        brand = self._brand(msg, control.brand)
        self.kit.settings.brand(brand)  # an unknown brand is the app's error: refuse now
        p, t = self.kit.resolve(purpose_name, control.topic)
        topic_id = t.id if t else None
        plan = Plan(purpose=p.name, commercial=p.commercial, brand=brand, stripped=stripped)
        allowed: list[str] = []
        for rcpt in recipients:
            if rcpt.lower() in skip:
                continue
            decision = self.kit.can_send(rcpt, p.id, topic_id)
            if decision.allowed:
                allowed.append(rcpt)
            else:
                plan.suppressed.append((rcpt, decision.reason))
        if not allowed:
            return plan
        message_id = None
        if "Message-ID" not in msg:
            message_id = f"<relay.{key[:32]}@{_from_domain(msg) or 'unsubkit.invalid'}>"
        plan.copies.extend(self.preparer.prepare_each(
            msg, allowed, purpose=p.id, topic=topic_id, brand=brand, message_id=message_id,
        ))
        return plan
