"""Consent history (pure): the current state is a fold over the append-only events.

The store keeps a materialized ``consent_state`` table for speed, but it is only a cache of this
fold: :func:`subjects_of` is the single rule both use to decide which state rows an event writes,
and the tests check that ``fold(events)`` equals what the store reports.

Rows are keyed by *subject* and *scope*. A subject is a contact point (one address) or a contact
(all its addresses). An opt-out writes exactly one row: on the contact when it was recorded at
identity level (or is the contact-level bulk-email switch) and the address had a contact, else on
the address. An opt-in clears the scope on the address *and* on the contact owning it, so the
holder of an address can always lift a block that applies to it. Events recorded with
``changed=False`` wrote no row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .decisions import ConsentState
from .model import Action, ConsentLevel, Event, ScopeKind

__all__ = [
    "CONTACT",
    "POINT",
    "History",
    "HistoryEntry",
    "RowKey",
    "Subject",
    "fold",
    "history_of",
    "row_key",
    "state_of",
    "subjects_of",
]

POINT: Literal["point"] = "point"
CONTACT: Literal["contact"] = "contact"

#: ``("point", contact_points.id)`` or ``("contact", contacts.id)``.
Subject = tuple[str, int]
#: ``(subject_type, subject_id, scope_kind, purpose_id or 0, topic_id or 0)`` as in the table.
RowKey = tuple[str, int, str, int, int]


def subjects_of(ev: Event) -> list[Subject]:
    """The state rows ``ev`` writes (the same rule the store applies when recording it)."""
    if ev.point_id is None:
        raise ValueError("an event without its contact point cannot be folded")
    if ev.action is Action.OPT_OUT:
        if ev.level is ConsentLevel.IDENTITY and ev.contact_id is not None:
            return [(CONTACT, ev.contact_id)]
        return [(POINT, ev.point_id)]
    subjects: list[Subject] = [(POINT, ev.point_id)]
    if ev.contact_id is not None:
        subjects.append((CONTACT, ev.contact_id))
    return subjects


def row_key(subject: Subject, ev: Event) -> RowKey:
    return (subject[0], subject[1], str(ev.scope.kind), ev.scope.purpose_id or 0,
            ev.scope.topic_id or 0)


def fold(events: Iterable[Event], rows: dict[RowKey, bool] | None = None) -> dict[RowKey, bool]:
    """Apply events in order; the value is ``opted_out`` (the last event for a row wins).

    Events with ``changed=False`` wrote nothing: a repeat of the current state, or an event whose
    brand handler replaced the built-in action.
    """
    out = {} if rows is None else rows
    for ev in events:
        if not ev.changed:
            continue
        opted_out = ev.action is Action.OPT_OUT
        for subject in subjects_of(ev):
            out[row_key(subject, ev)] = opted_out
    return out


def state_of(rows: Mapping[RowKey, bool], point_id: int | None, contact_id: int | None) -> ConsentState:
    """The opt-outs that apply to one address: its own rows plus its contact's rows."""
    mine: set[Subject] = {(POINT, point_id)} if point_id is not None else set()
    if contact_id is not None:
        mine.add((CONTACT, contact_id))
    purposes: set[int] = set()
    topics: set[int] = set()
    bulk = False
    for (stype, sid, kind, pid, tid), opted_out in rows.items():
        if not opted_out or (stype, sid) not in mine:
            continue
        if kind == ScopeKind.PURPOSE:
            purposes.add(pid)
        elif kind == ScopeKind.TOPIC:
            topics.add(tid)
        elif kind == ScopeKind.BULK_EMAIL:
            bulk = True
    return ConsentState(frozenset(purposes), frozenset(topics), bulk)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    event: Event
    #: What applied to the address right after this event.
    state_after: ConsentState


@dataclass(frozen=True, slots=True)
class History:
    """Every event that shaped one address's current state, oldest first."""

    address: str
    point_id: int | None
    contact_id: int | None
    entries: list[HistoryEntry] = field(default_factory=list)

    @property
    def state(self) -> ConsentState:
        return self.entries[-1].state_after if self.entries else ConsentState()

    @property
    def known(self) -> bool:
        return self.point_id is not None


def history_of(
    address: str, point_id: int | None, contact_id: int | None, events: Iterable[Event]
) -> History:
    """Fold ``events`` (the address's own and its current contact's) into a history."""
    rows: dict[RowKey, bool] = {}
    entries: list[HistoryEntry] = []
    for ev in sorted(events, key=lambda e: e.id):
        fold((ev,), rows)
        entries.append(HistoryEntry(ev, state_of(rows, point_id, contact_id)))
    return History(address, point_id, contact_id, entries)
