"""From one submitted transaction to the copies to forward (blocking: the store and DKIM).

The message's ``X-Unsubkit-*`` fields name purpose, topic and brand and are removed; each
envelope recipient is checked with :meth:`Unsubkit.can_send`; the allowed ones get their own
copy from :class:`~unsubkit.prepare.Preparer` (tokens are per recipient: headers, body link,
DKIM signature; transactional mail is signed only). Run it in a worker thread.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from email.utils import getaddresses

from ..errors import MessageError
from ..prepare import Preparer
from ..service import Unsubkit
from ..settings import DEFAULT_BRAND
from .policy import split_control

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


def _from_domain(values: list[str]) -> str | None:
    addr = next((a for _, a in getaddresses(values) if "@" in a), None)
    return addr.rpartition("@")[2].lower() if addr else None


class Planner:
    def __init__(self, kit: Unsubkit, *, default_purpose: str | None = None,
                 default_brand: str | None = None) -> None:
        self.kit = kit
        self.preparer = Preparer(kit)
        self.default_purpose = default_purpose
        self.default_brand = default_brand

    def _brand(self, from_domain: str | None, asked: str | None) -> str:
        if asked:
            return asked
        if self.default_brand:
            return self.default_brand
        by_domain = self.kit.settings.brand_for_domain(from_domain) if from_domain else None
        return by_domain or DEFAULT_BRAND

    def plan(self, data: bytes, recipients: Sequence[str], *, key: str,
             skip: Collection[str] = ()) -> Plan:
        """The copies for ``recipients`` (minus ``skip``, lower-cased ones already sent).

        ``key`` identifies the transaction; a message without ``Message-ID`` gets one derived
        from it, so a retried transaction carries the same id as its first copies.
        Raises :class:`~unsubkit.errors.UnsubkitError` subclasses (the handler maps them).
        """
        sub = split_control(data)
        control = sub.control
        purpose_name = control.purpose or self.default_purpose
        if purpose_name is None:
            raise MessageError(
                "no X-Unsubkit-Purpose field and no default purpose (relay_default_purpose)"
            )
        if not sub.fields.get("from"):
            raise MessageError("the message has no From field")
        from_domain = _from_domain(sub.fields["from"])
        brand = self._brand(from_domain, control.brand)
        self.kit.settings.brand(brand)  # an unknown brand is the app's error: refuse now
        p, t = self.kit.resolve(purpose_name, control.topic)
        topic_id = t.id if t else None
        plan = Plan(purpose=p.name, commercial=p.commercial, brand=brand, stripped=sub.stripped)
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
        if not sub.fields.get("message-id"):
            message_id = f"<relay.{key[:32]}@{from_domain or 'unsubkit.invalid'}>"
        plan.copies.extend(self.preparer.prepare_each(
            sub.data, allowed, purpose=p.id, topic=topic_id, brand=brand, message_id=message_id,
        ))
        return plan
