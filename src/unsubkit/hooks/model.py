"""What the hooks deliver and to whom (pure: frozen dataclasses and functions, no IO).

An :class:`Endpoint` is a registered webhook URL with optional filters; a *target* is either
an endpoint (``webhook``) or a custom handler (``handler``). One consent event becomes one JSON
payload (:func:`event_payload`), delivered once per matching target.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..clock import to_datetime
from ..consent.model import Action, Event, ScopeKind
from ..errors import WebhookError

__all__ = [
    "EVENT_TYPES",
    "OPTED_IN",
    "OPTED_OUT",
    "TEST",
    "Delivery",
    "DeliveryStatus",
    "Endpoint",
    "EventFacts",
    "TargetKind",
    "encode_payload",
    "event_payload",
    "event_type",
    "iso_time",
    "message_id",
    "validate_event_types",
]

OPTED_OUT = "consent.opted_out"
OPTED_IN = "consent.opted_in"
#: Sent by ``unsubkit webhooks test`` only, never by the outbox.
TEST = "webhook.test"
EVENT_TYPES = (OPTED_OUT, OPTED_IN)


class TargetKind(StrEnum):
    WEBHOOK = "webhook"
    HANDLER = "handler"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    #: Its endpoint was removed before it was delivered.
    CANCELLED = "cancelled"
    #: A dead delivery queued again by ``webhooks replay --dead`` (the new row has ``replay_of``).
    REPLAYED = "replayed"


def event_type(action: Action) -> str:
    return OPTED_OUT if action is Action.OPT_OUT else OPTED_IN


def validate_event_types(types: Sequence[str]) -> list[str]:
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise WebhookError(f"unknown event type {unknown[0]!r} (known: {', '.join(EVENT_TYPES)})")
    return list(dict.fromkeys(types))


def iso_time(ts: float) -> str:
    """RFC 3339 UTC with microseconds and ``Z`` (``2026-01-01T00:00:00.000000Z``)."""
    return to_datetime(ts).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def message_id(event_id: int, target: str) -> str:
    """The ``webhook-id``: stable per event and target, so retries and replays share it and a
    receiver can deduplicate on it (or on the payload's ``event_id``)."""
    return f"msg_{event_id}_{target}"[:100]


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    url: str
    description: str = ""
    brands: tuple[str, ...] = ()
    purposes: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()
    created_at: float = 0.0
    #: Secrets stay out of ``repr`` (and so out of logs).
    secret: str = field(default="", repr=False)
    previous_secret: str | None = field(default=None, repr=False)
    previous_secret_until: float | None = None

    def accepts(self, facts: EventFacts) -> bool:
        """Empty filters accept everything. A bulk-email event (all commercial purposes) passes
        every purpose filter: it affects each of them."""
        if self.brands and facts.brand not in self.brands:
            return False
        if self.event_types and facts.type not in self.event_types:
            return False
        return not self.purposes or facts.scope == ScopeKind.BULK_EMAIL or facts.purpose in self.purposes

    def secrets(self, now: float) -> list[str]:
        """Secrets to sign with: the current one, plus the previous one during its grace time."""
        out = [self.secret]
        if self.previous_secret and (self.previous_secret_until or 0) > now:
            out.append(self.previous_secret)
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "description": self.description,
            "brands": list(self.brands),
            "purposes": list(self.purposes),
            "event_types": list(self.event_types),
            "created_at": iso_time(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class EventFacts:
    """An event plus the names a receiver needs (resolved from the catalog at fan-out)."""

    event: Event
    purpose: str | None
    topic: str | None
    replaced_by: str | None = None

    @property
    def type(self) -> str:
        return event_type(self.event.action)

    @property
    def brand(self) -> str:
        return self.event.brand

    @property
    def scope(self) -> ScopeKind:
        return self.event.scope.kind


def event_payload(facts: EventFacts) -> dict[str, Any]:
    """The JSON body for one event (the same for every target)."""
    ev = facts.event
    return {
        "type": facts.type,
        "event_id": ev.id,
        "time": iso_time(ev.at),
        "address": ev.address,
        "scope": str(ev.scope.kind),
        "purpose": facts.purpose,
        "purpose_id": ev.scope.purpose_id,
        "topic": facts.topic,
        "topic_id": ev.scope.topic_id,
        "brand": ev.brand,
        "action": str(ev.action),
        "source": ev.source,
        "reason": ev.reason,
        "mechanism": str(ev.mechanism),
        "message_id": ev.message_id,
        "contact_id": ev.contact_id,
        "changed": ev.changed,
        "default_action": "replaced" if facts.replaced_by else "applied",
        "handler": facts.replaced_by,
        "suspected_automated": ev.suspected_automated,
    }


def encode_payload(payload: dict[str, Any]) -> str:
    """Compact, key-ordered JSON: the exact text that is signed and sent."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One (event, target) delivery as stored."""

    id: int
    event_id: int
    target_kind: TargetKind
    target: str
    msg_id: str
    event_type: str
    payload: str
    status: DeliveryStatus
    attempts: int
    created_at: float
    next_attempt_at: float
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None
    replay_of: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event_id": self.event_id,
            "target_kind": str(self.target_kind),
            "target": self.target,
            "webhook_id": self.msg_id,
            "type": self.event_type,
            "status": str(self.status),
            "attempts": self.attempts,
            "created_at": iso_time(self.created_at),
            "next_attempt_at": iso_time(self.next_attempt_at),
            "last_status": self.last_status,
            "last_error": self.last_error,
            "delivered_at": iso_time(self.delivered_at) if self.delivered_at else None,
            "replay_of": self.replay_of,
        }
