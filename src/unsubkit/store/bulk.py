"""Bulk store operations: the blocked set for send-time filtering, batch imports, streaming
exports (called by :class:`SQLStore`).

The blocked set is read with one aggregate per page (``group_concat`` / ``string_agg``): the
database hands back one newline-joined string per 100,000 addresses instead of 100,000 row
objects, which is what makes filtering a million-row list against a million opt-outs cost about
the same as a set difference in Python.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, and_, bindparam, func, literal, select, true
from sqlalchemy.exc import SQLAlchemyError

from ..consent.history import CONTACT, POINT
from ..consent.model import Action, ConsentChange, ConsentLevel, Event, Mechanism, Scope, ScopeKind
from .errors import translate
from .rows import row_to_event, scope_key, scope_of_row
from .schema import consent_state, contact_points, events, outbox

if TYPE_CHECKING:
    from .sql import SQLStore

__all__ = [
    "PAGE",
    "REASON_BULK",
    "REASON_PURPOSE",
    "REASON_TOPIC",
    "StateRow",
    "blocked_addresses",
    "bulk_opt_out",
    "iter_events",
    "iter_state",
]

#: Same wording as :func:`unsubkit.consent.decisions.decide`.
REASON_BULK = "bulk email not allowed"
REASON_PURPOSE = "opted out of purpose"
REASON_TOPIC = "opted out of topic"
PAGE = 100_000
_STREAM = 2_000


def _agg(store: SQLStore, column: Any) -> Any:
    if store.dialect == "postgresql":
        return func.string_agg(column, literal("\n"))
    return func.group_concat(column, literal("\n"))


def _pages(
    store: SQLStore, conn: Connection, subject_type: str, cond: ColumnElement[bool]
) -> Iterator[list[str]]:
    """Addresses blocked through ``subject_type`` rows matching ``cond``, a page at a time."""
    after = 0
    join_on = (contact_points.c.id if subject_type == POINT else contact_points.c.contact_id)
    while True:
        page = (
            select(consent_state.c.id.label("sid"), consent_state.c.subject_id)
            .where(consent_state.c.subject_type == subject_type, consent_state.c.opted_out.is_(True),
                   cond, consent_state.c.id > bindparam("after"))
            .order_by(consent_state.c.id)
            .limit(PAGE)
            .subquery()
        )
        text, last = conn.execute(
            select(_agg(store, contact_points.c.address), func.max(page.c.sid))
            .select_from(page.join(contact_points, join_on == page.c.subject_id, isouter=True)),
            {"after": after},
        ).one()
        if text:
            yield text.split("\n")
        if last is None:
            return
        after = last


def blocked_addresses(store: SQLStore, purpose_id: int, topic_id: int | None) -> Iterator[tuple[str, list[str]]]:
    """``(reason, addresses)`` pages of every address a send to (purpose, topic) must skip.

    Yielded in increasing precedence (topic, purpose, bulk email): a consumer building a dict
    lets later reasons overwrite earlier ones, matching :func:`~unsubkit.consent.decide`.
    A topic opt-out matches on the topic id alone (topics may have moved between purposes).
    """
    kinds: list[tuple[str, ColumnElement[bool]]] = []
    if topic_id is not None:
        kinds.append((REASON_TOPIC, and_(consent_state.c.scope_kind == str(ScopeKind.TOPIC),
                                         consent_state.c.topic_id == topic_id)))
    kinds.append((REASON_PURPOSE, and_(consent_state.c.scope_kind == str(ScopeKind.PURPOSE),
                                       consent_state.c.purpose_id == purpose_id,
                                       consent_state.c.topic_id == 0)))
    kinds.append((REASON_BULK, consent_state.c.scope_kind == str(ScopeKind.BULK_EMAIL)))
    try:
        with store.engine.connect() as conn:
            for reason, cond in kinds:
                for subject_type in (POINT, CONTACT):
                    for page in _pages(store, conn, subject_type, cond):
                        yield reason, page
    except SQLAlchemyError as exc:
        raise translate(exc) from exc


def _chunks(seq: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def bulk_opt_out(
    store: SQLStore, addresses: Sequence[str], scope: Scope, *, at: float, source: str,
    reason: str, mechanism: Mechanism, brand: str,
) -> tuple[int, int]:
    """Opt normalized ``addresses`` out of ``scope`` at channel level, in one transaction.

    Addresses already opted out of exactly this scope (on the address or its contact) are
    skipped: running the same import twice records nothing the second time. Returns
    ``(recorded, skipped)``.
    """
    unique = list(dict.fromkeys(addresses))
    if not unique:
        return 0, 0
    with store.tx() as conn:
        conn.execute(
            store._insert(contact_points).on_conflict_do_nothing(index_elements=["address"]),
            [{"address": a, "created_at": at} for a in unique],
        )
        points: dict[str, tuple[int, int | None]] = {}
        q = select(contact_points.c.id, contact_points.c.contact_id, contact_points.c.address).where(
            contact_points.c.address.in_(bindparam("addrs", expanding=True))
        )
        for part in _chunks(unique, 5000):
            for r in conn.execute(q, {"addrs": list(part)}):
                points[r.address] = (r.id, r.contact_id)
        blocked_points: set[int] = set()
        blocked_contacts: set[int] = set()
        sq = select(consent_state.c.subject_type, consent_state.c.subject_id).where(
            scope_key(scope), consent_state.c.opted_out.is_(True),
            consent_state.c.subject_type == bindparam("st"),
            consent_state.c.subject_id.in_(bindparam("ids", expanding=True)),
        )
        pids = [p for p, _ in points.values()]
        cids = sorted({c for _, c in points.values() if c is not None})
        for st, ids, into in ((POINT, pids, blocked_points), (CONTACT, cids, blocked_contacts)):
            for part in _chunks(ids, 5000):
                into.update(r.subject_id for r in conn.execute(sq, {"st": st, "ids": list(part)}))
        todo = [
            (a, pid, cid) for a in unique
            for pid, cid in (points[a],)
            if pid not in blocked_points and (cid is None or cid not in blocked_contacts)
        ]
        if not todo:
            return 0, len(unique)
        rows = [
            {
                "at": at, "address": a, "contact_point_id": pid, "contact_id": cid,
                "scope_kind": str(scope.kind), "purpose_id": scope.purpose_id,
                "topic_id": scope.topic_id, "action": str(Action.OPT_OUT), "source": source,
                "reason": reason, "mechanism": str(mechanism), "brand": brand,
                "message_id": None, "client_ip": None, "user_agent": None, "changed": True,
                "suspected_automated": False, "evidence": None,
                "level": ConsentLevel.CHANNEL.label,
            }
            for a, pid, cid in todo
        ]
        ids = list(conn.execute(
            events.insert().returning(events.c.id, sort_by_parameter_order=True), rows
        ).scalars())
        ins = store._insert(consent_state)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=["subject_type", "subject_id", "scope_kind", "purpose_id", "topic_id"],
                set_={"opted_out": True, "updated_at": at, "event_id": ins.excluded.event_id},
            ),
            [
                {"subject_type": POINT, "subject_id": pid, "scope_kind": str(scope.kind),
                 "purpose_id": scope.purpose_id or 0, "topic_id": scope.topic_id or 0,
                 "opted_out": True, "updated_at": at, "event_id": eid}
                for (_, pid, _), eid in zip(todo, ids, strict=True)
            ],
        )
        outbox_rows = [
            store._outbox_row(_import_change(a, scope, source, reason, mechanism, brand), eid, at)
            for (a, _, _), eid in zip(todo, ids, strict=True)
        ]
        conn.execute(outbox.insert(), outbox_rows)
    return len(todo), len(unique) - len(todo)


def _import_change(address: str, scope: Scope, source: str, reason: str, mechanism: Mechanism,
                   brand: str) -> ConsentChange:
    return ConsentChange(address=address, scope=scope, action=Action.OPT_OUT, source=source,
                         reason=reason, mechanism=mechanism, brand=brand)


@dataclass(frozen=True, slots=True)
class StateRow:
    """One current-state row as exported: a contact-level row appears once per address."""

    address: str
    level: ConsentLevel
    contact_id: int | None
    scope: Scope
    opted_out: bool
    updated_at: float
    event_id: int


def iter_state(store: SQLStore, *, include_opted_in: bool) -> Iterator[StateRow]:
    cs, cp = consent_state, contact_points
    for subject_type, join_on in ((POINT, cp.c.id), (CONTACT, cp.c.contact_id)):
        q = (
            select(cs.c.scope_kind, cs.c.purpose_id, cs.c.topic_id, cs.c.opted_out,
                   cs.c.updated_at, cs.c.event_id, cp.c.address, cp.c.contact_id)
            .select_from(cs.join(cp, join_on == cs.c.subject_id))
            .where(cs.c.subject_type == subject_type)
            .order_by(cs.c.id, cp.c.id)
        )
        if not include_opted_in:
            q = q.where(cs.c.opted_out.is_(True))
        level = ConsentLevel.CHANNEL if subject_type == POINT else ConsentLevel.IDENTITY
        for r in _stream(store, q):
            yield StateRow(r.address, level, r.contact_id,
                           scope_of_row(r.scope_kind, r.purpose_id, r.topic_id),
                           bool(r.opted_out), r.updated_at, r.event_id)


def iter_events(
    store: SQLStore, *, since: float | None, until: float | None, mechanism: Mechanism | None,
    address: str | None, suspected: bool | None, limit: int | None,
) -> Iterator[Event]:
    q = select(events).where(true()).order_by(events.c.id)
    if since is not None:
        q = q.where(events.c.at >= since)
    if until is not None:
        q = q.where(events.c.at < until)
    if mechanism is not None:
        q = q.where(events.c.mechanism == str(mechanism))
    if address is not None:
        q = q.where(events.c.address == address)
    if suspected is not None:
        q = q.where(events.c.suspected_automated.is_(suspected))
    if limit is not None:
        q = q.limit(limit)
    for r in _stream(store, q):
        yield row_to_event(r)


def _stream(store: SQLStore, q: Any) -> Iterator[Any]:
    """Rows without holding them all (a server-side cursor on PostgreSQL)."""
    try:
        with store.engine.connect() as conn:
            result = conn.execution_options(yield_per=_STREAM).execute(q)
            yield from result
    except SQLAlchemyError as exc:
        raise translate(exc) from exc
