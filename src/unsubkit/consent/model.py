"""Consent vocabulary: purposes, topics, scopes, changes and events (frozen dataclasses).

A *contact point* is one normalized email address; a *contact* may own several. A *purpose* is
commercial or transactional; a *topic* belongs to one purpose. Every change of consent is an
append-only :class:`Event`; the current state is derived from events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

__all__ = [
    "Action",
    "ConsentChange",
    "ConsentLevel",
    "Event",
    "Mechanism",
    "Purpose",
    "PurposeKind",
    "Reason",
    "RequestMeta",
    "Scope",
    "ScopeKind",
    "Source",
    "Topic",
    "event_json",
]


class ConsentLevel(IntEnum):
    """Where consent lives: on the address (channel) or on the contact owning it (identity)."""

    CHANNEL = 0
    IDENTITY = 1

    @property
    def label(self) -> str:
        return self.name.lower()


class PurposeKind(StrEnum):
    COMMERCIAL = "commercial"
    TRANSACTIONAL = "transactional"


class Action(StrEnum):
    OPT_OUT = "opt-out"
    OPT_IN = "opt-in"


class ScopeKind(StrEnum):
    PURPOSE = "purpose"
    TOPIC = "topic"
    #: Contact-level "bulk email: do not allow": every commercial purpose.
    BULK_EMAIL = "bulk_email"


class Mechanism(StrEnum):
    ONE_CLICK = "one-click"
    LANDING_PAGE = "landing page"
    MAILTO = "mailto"
    PREFERENCE_PAGE = "preference page"
    API = "api"
    IMPORT = "import"
    CLI = "cli"


class Source:
    """Source labels as the seeds word them (kept as plain strings: users may add their own)."""

    LIST_UNSUBSCRIBE = "Email - list-unsubscribe"
    MAILTO = "Email - mailto"
    PREFERENCE_CENTER = "Preference center"
    API = "API"
    IMPORT = "Import"
    CLI = "CLI"
    #: Opt-outs carried from a contact to its addresses when they leave it (unlink, delete).
    CONTACTS = "Contact management"


class Reason:
    ONE_CLICK = "Opt-out - One-click unsubscribe"
    LANDING_PAGE = "Opt-out - Landing page"
    MAILTO = "Opt-out - mailto unsubscribe"
    PREFERENCE = "Preference center update"
    RESUBSCRIBE = "Opt-in - Resubscribe"
    IMPORT = "Import"
    API = "API"
    CLI = "CLI"
    BULK_EMAIL_DENY = "Bulk email - do not allow"
    BULK_EMAIL_ALLOW = "Bulk email - allow"

    @staticmethod
    def carried_over(contact_id: int) -> str:
        return f"Carried over from contact #{contact_id}"


@dataclass(frozen=True, slots=True)
class Purpose:
    id: int
    name: str
    kind: PurposeKind = PurposeKind.COMMERCIAL
    description: str = ""

    @property
    def commercial(self) -> bool:
        return self.kind is PurposeKind.COMMERCIAL


@dataclass(frozen=True, slots=True)
class Topic:
    id: int
    name: str
    purpose_id: int
    description: str = ""


@dataclass(frozen=True, slots=True)
class Scope:
    """What a change applies to: a purpose (all its topics), one topic, or bulk email."""

    kind: ScopeKind
    purpose_id: int | None = None
    topic_id: int | None = None

    @classmethod
    def purpose(cls, purpose_id: int) -> Scope:
        return cls(ScopeKind.PURPOSE, purpose_id, None)

    @classmethod
    def topic(cls, purpose_id: int, topic_id: int) -> Scope:
        return cls(ScopeKind.TOPIC, purpose_id, topic_id)

    @classmethod
    def bulk_email(cls) -> Scope:
        return cls(ScopeKind.BULK_EMAIL, None, None)

    @classmethod
    def of(cls, purpose_id: int, topic_id: int | None) -> Scope:
        return cls.purpose(purpose_id) if topic_id is None else cls.topic(purpose_id, topic_id)


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """Evidence about the request that caused a change (kept for audit)."""

    client_ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """A request to record one consent event."""

    address: str
    scope: Scope
    action: Action
    source: str
    reason: str
    mechanism: Mechanism
    brand: str = "default"
    message_id: str | None = None
    level: ConsentLevel = ConsentLevel.CHANNEL
    contact_id: int | None = None
    meta: RequestMeta = field(default_factory=RequestMeta)
    #: When the token behind this change was issued (for the automated-opt-out heuristics).
    token_issued_at: int | None = None
    #: A handler that replaces the built-in action (the brand's ``replace_default_with``): the
    #: event is recorded (``changed=False``) and handed to that handler, the state is untouched.
    replace_with: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A stored, immutable consent event."""

    id: int
    address: str
    scope: Scope
    action: Action
    source: str
    reason: str
    mechanism: Mechanism
    brand: str
    message_id: str | None
    at: float
    client_ip: str | None = None
    user_agent: str | None = None
    #: The contact owning the address when the event was recorded (for audit and history).
    contact_id: int | None = None
    #: True when the state changed; a repeated opt-out is recorded but changes nothing.
    changed: bool = True
    suspected_automated: bool = False
    evidence: str | None = None
    #: IDENTITY when an opt-out was written on the contact (all its addresses), CHANNEL when on
    #: the address alone. See :func:`unsubkit.consent.history.subjects_of`.
    level: ConsentLevel = ConsentLevel.CHANNEL
    #: The contact point (address row) the event belongs to.
    point_id: int | None = None


def event_json(ev: Event) -> dict[str, Any]:
    """An event as JSON-ready data (the admin API, ``consent`` commands, exports)."""
    return {
        "id": ev.id,
        "at": ev.at,
        "address": ev.address,
        "scope": str(ev.scope.kind),
        "purpose_id": ev.scope.purpose_id,
        "topic_id": ev.scope.topic_id,
        "action": str(ev.action),
        "source": ev.source,
        "reason": ev.reason,
        "mechanism": str(ev.mechanism),
        "brand": ev.brand,
        "message_id": ev.message_id,
        "client_ip": ev.client_ip,
        "user_agent": ev.user_agent,
        "changed": ev.changed,
        "suspected_automated": ev.suspected_automated,
        "evidence": ev.evidence,
        "level": ev.level.label,
        "contact_id": ev.contact_id,
    }
