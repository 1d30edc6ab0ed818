"""Row <-> model helpers shared by the store modules."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_

from ..consent.model import Action, ConsentLevel, Event, Mechanism, Scope, ScopeKind
from .schema import consent_state

__all__ = ["row_to_event", "scope_key", "scope_of_row"]


def row_to_event(r: Any) -> Event:
    kind = ScopeKind(r.scope_kind)
    return Event(
        id=r.id,
        address=r.address,
        scope=Scope(kind, r.purpose_id, r.topic_id),
        action=Action(r.action),
        source=r.source,
        reason=r.reason,
        mechanism=Mechanism(r.mechanism),
        brand=r.brand,
        message_id=r.message_id,
        at=r.at,
        client_ip=r.client_ip,
        user_agent=r.user_agent,
        contact_id=r.contact_id,
        changed=bool(r.changed),
        suspected_automated=bool(r.suspected_automated),
        evidence=r.evidence,
        level=ConsentLevel.IDENTITY if r.level == "identity" else ConsentLevel.CHANNEL,
        point_id=r.contact_point_id,
    )


def scope_key(scope: Scope) -> Any:
    """The ``consent_state`` condition for one scope (0 stands for "none" in the key)."""
    return and_(
        consent_state.c.scope_kind == str(scope.kind),
        consent_state.c.purpose_id == (scope.purpose_id or 0),
        consent_state.c.topic_id == (scope.topic_id or 0),
    )


def scope_of_row(kind: str, purpose_id: int, topic_id: int) -> Scope:
    """The :class:`Scope` of a ``consent_state`` row (0 back to ``None``)."""
    return Scope(ScopeKind(kind), purpose_id or None, topic_id or None)
