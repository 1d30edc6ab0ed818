"""Bulk store operations: the blocked set for send-time filtering, batch imports, streaming
exports (called by :class:`SQLStore`).

The blocked set is read with one aggregate per window of subject ids (``group_concat`` /
``string_agg``): the database hands back one newline-joined string per 100,000 subjects instead
of 100,000 row objects, which is what keeps filtering a million-row list against a million
opt-outs within twice the cost of a set difference in Python.
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
from .schema import consent_state, contact_points, events

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
    "refresh_statistics",
]

#: Same wording as :func:`unsubkit.consent.decisions.decide`.
REASON_BULK = "bulk email not allowed"
REASON_PURPOSE = "opted out of purpose"
REASON_TOPIC = "opted out of topic"
PAGE = 100_000
#: Values per ``IN (...)`` list (well under SQLite's 32,766 and PostgreSQL's 65,535 parameters).
IN_LIST = 10_000
_STREAM = 2_000


def _agg(store: SQLStore, column: Any) -> Any:
    if store.dialect == "postgresql":
        return func.string_agg(column, literal("\n"))
    return func.group_concat(column, literal("\n"))


def _pages(
    store: SQLStore, conn: Connection, subject_type: str, cond: ColumnElement[bool]
) -> Iterator[list[str]]:
    """Addresses blocked through ``subject_type`` rows matching ``cond``, one window of
    ``PAGE`` subject ids at a time: an index-only range scan on the covering index
    ``ix_consent_state_scope_subject``, joined to the addresses by primary key (points) or by
    ``contact_id`` (contacts), aggregated into one string per window."""
    cs = consent_state
    base = and_(cs.c.subject_type == subject_type, cs.c.opted_out.is_(True), cond)
    top = conn.execute(select(func.max(cs.c.subject_id)).where(base)).scalar()
    if top is None:
        return
    join_on = contact_points.c.id if subject_type == POINT else contact_points.c.contact_id
    q = (
        select(_agg(store, contact_points.c.address))
        .select_from(cs.join(contact_points, join_on == cs.c.subject_id))
        .where(base, cs.c.subject_id > bindparam("lo"), cs.c.subject_id <= bindparam("hi"),
               # Redundant through the join, but lets PostgreSQL read only this window of
               # contact_points by index instead of hashing the whole table per window.
               join_on > bindparam("lo"), join_on <= bindparam("hi"))
    )
    for lo in range(0, int(top), PAGE):
        text = conn.execute(q, {"lo": lo, "hi": lo + PAGE}).scalar()
        if text:
            yield text.split("\n")


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


def _new_event_ids(store: SQLStore, conn: Connection, n: int) -> list[int]:
    """``n`` fresh event ids, allocated up front so the rows can be written in bulk."""
    if store.dialect == "postgresql":
        rows = conn.exec_driver_sql(
            "SELECT nextval(pg_get_serial_sequence('events', 'id')) FROM generate_series(1, %s)",
            (n,),
        ).all()
        return [int(r[0]) for r in rows]
    # SQLite: this transaction holds the write lock (BEGIN IMMEDIATE), nobody else inserts.
    top = conn.exec_driver_sql("SELECT COALESCE(MAX(id), 0) FROM events").scalar_one()
    return list(range(int(top) + 1, int(top) + 1 + n))


# The statements below are built from constants and our own column names only (no input);
# values always travel as parameters. SQLite gets driver-level executemany (no per-row
# statement compilation); PostgreSQL gets one INSERT ... SELECT FROM unnest(arrays) per table,
# which avoids a network round trip per row.

_EVENT_COLS = ("id, at, address, contact_point_id, contact_id, scope_kind, purpose_id, topic_id, "
               "action, source, reason, mechanism, brand, changed, suspected_automated, level")
_STATE_UPSERT = (
    " ON CONFLICT (subject_type, subject_id, scope_kind, purpose_id, topic_id) DO UPDATE SET "
    "opted_out = excluded.opted_out, updated_at = excluded.updated_at, event_id = excluded.event_id"
)


def _write_points(store: SQLStore, conn: Connection, addresses: list[str], at: float) -> None:
    if store.dialect == "postgresql":
        conn.exec_driver_sql(
            "INSERT INTO contact_points (address, created_at) SELECT a, %s FROM unnest(%s::text[]) "
            "AS t(a) ON CONFLICT (address) DO NOTHING", (at, addresses))
        return
    conn.exec_driver_sql(
        "INSERT INTO contact_points (address, created_at) VALUES (?, ?) ON CONFLICT (address) DO NOTHING",
        [(a, at) for a in addresses])  # type: ignore[arg-type]


def _write_opt_outs(
    store: SQLStore, conn: Connection, ids: list[int], todo: list[tuple[str, int, int | None]],
    scope: Scope, at: float, source: str, reason: str, mechanism: Mechanism, brand: str,
    outbox_row: dict[str, Any],
) -> None:
    """Events, state rows and outbox rows for ``todo`` (``(address, point id, contact id)``)."""
    kind, pid_, tid_ = str(scope.kind), scope.purpose_id, scope.topic_id
    consts = (at, kind, pid_, tid_, str(Action.OPT_OUT), source, reason, str(mechanism), brand)
    level = ConsentLevel.CHANNEL.label
    # Outbox rows: the shape is SQLStore._outbox_row's; only the event id varies.
    extra = {k: v for k, v in outbox_row.items() if k != "event_id"}
    ocols = ", ".join(["event_id", *extra])
    if store.dialect == "postgresql":
        addrs = [a for a, _, _ in todo]
        pids = [p for _, p, _ in todo]
        cids = [c for _, _, c in todo]
        conn.exec_driver_sql(
            f"INSERT INTO events ({_EVENT_COLS}) SELECT t.id, %s, t.a, t.p, t.c, %s, %s, %s, %s, %s, "  # noqa: S608
            "%s, %s, %s, true, false, %s FROM unnest(%s::bigint[], %s::text[], %s::bigint[], "
            "%s::bigint[]) AS t(id, a, p, c)", (*consts, level, ids, addrs, pids, cids))
        conn.exec_driver_sql(
            "INSERT INTO consent_state (subject_type, subject_id, scope_kind, purpose_id, topic_id, "
            "opted_out, updated_at, event_id) SELECT %s, t.p, %s, %s, %s, true, %s, t.e "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS t(p, e)" + _STATE_UPSERT,
            (POINT, kind, pid_ or 0, tid_ or 0, at, pids, ids))
        marks = "".join(", %s" for _ in extra)
        conn.exec_driver_sql(
            f"INSERT INTO outbox ({ocols}) SELECT t.e{marks} FROM unnest(%s::bigint[]) AS t(e)",  # noqa: S608
            (*extra.values(), ids))
        return
    conn.exec_driver_sql(
        f"INSERT INTO events ({_EVENT_COLS}) VALUES ({', '.join(['?'] * 16)})",  # noqa: S608
        [(eid, at, a, pid, cid, *consts[1:], True, False, level)  # type: ignore[arg-type]
         for eid, (a, pid, cid) in zip(ids, todo, strict=True)])
    conn.exec_driver_sql(
        "INSERT INTO consent_state (subject_type, subject_id, scope_kind, purpose_id, topic_id, "  # noqa: S608
        "opted_out, updated_at, event_id) VALUES (?, ?, ?, ?, ?, 1, ?, ?)" + _STATE_UPSERT,
        [(POINT, pid, kind, pid_ or 0, tid_ or 0, at, eid)  # type: ignore[arg-type]
         for eid, (_, pid, _) in zip(ids, todo, strict=True)])
    rest = tuple(extra.values())
    conn.exec_driver_sql(
        f"INSERT INTO outbox ({ocols}) VALUES ({', '.join(['?'] * (1 + len(extra)))})",  # noqa: S608
        [(eid, *rest) for eid in ids])  # type: ignore[arg-type]


def _points(store: SQLStore, conn: Connection, addresses: list[str]) -> dict[str, tuple[int, int | None]]:
    """``address -> (point id, contact id)`` for existing contact points."""
    out: dict[str, tuple[int, int | None]] = {}
    for part in _chunks(addresses, IN_LIST):
        if store.dialect == "postgresql":
            # One array parameter, not thousands of placeholders for the driver to parse, and
            # one unique-index probe per address: LATERAL ... LIMIT 1 keeps the planner from
            # hashing the whole table per batch (what "= ANY" or a plain join turn into).
            rows = conn.exec_driver_sql(
                "SELECT p.id, p.contact_id, p.address FROM unnest(%s::text[]) AS t(a) "
                "CROSS JOIN LATERAL (SELECT id, contact_id, address FROM contact_points "
                "WHERE address = t.a LIMIT 1) AS p", (list(part),))
        else:
            rows = conn.execute(
                select(contact_points.c.id, contact_points.c.contact_id, contact_points.c.address)
                .where(contact_points.c.address.in_(bindparam("a", expanding=True))),
                {"a": list(part)})
        for pid, cid, address in rows:
            out[address] = (pid, cid)
    return out


def _opted_out(store: SQLStore, conn: Connection, scope: Scope, subject_type: str, ids: list[int]) -> set[int]:
    """The subjects among ``ids`` already opted out of exactly ``scope``."""
    out: set[int] = set()
    key = (str(scope.kind), scope.purpose_id or 0, scope.topic_id or 0, subject_type)
    for part in _chunks(ids, IN_LIST):
        if store.dialect == "postgresql":
            # One key probe per id (LATERAL ... LIMIT 1 forces it); a plain join or "= ANY"
            # lets the planner hash the whole table per batch, quadratic over an import.
            rows = conn.exec_driver_sql(
                "SELECT x.subject_id FROM unnest(%s::bigint[]) AS t(id) CROSS JOIN LATERAL ("
                "SELECT cs.subject_id FROM consent_state cs WHERE cs.subject_type = %s "
                "AND cs.subject_id = t.id AND cs.scope_kind = %s AND cs.purpose_id = %s "
                "AND cs.topic_id = %s AND cs.opted_out LIMIT 1) AS x",
                (list(part), key[3], *key[:3]))
        else:
            rows = conn.execute(
                select(consent_state.c.subject_id).where(
                    scope_key(scope), consent_state.c.opted_out.is_(True),
                    consent_state.c.subject_type == subject_type,
                    consent_state.c.subject_id.in_(bindparam("ids", expanding=True))),
                {"ids": list(part)})
        out.update(r[0] for r in rows)
    return out


def bulk_opt_out(
    store: SQLStore, addresses: Sequence[str], scope: Scope, *, at: float, source: str,
    reason: str, mechanism: Mechanism, brand: str,
) -> tuple[int, int]:
    """Opt normalized ``addresses`` out of ``scope`` at channel level, in one transaction.

    Addresses already opted out of exactly this scope (on the address or its contact) are
    skipped: running the same import twice records nothing the second time. Returns
    ``(recorded, skipped)``. Each recorded opt-out is an event with its state row and outbox
    row, exactly as :meth:`SQLStore.record` writes them.
    """
    unique = list(dict.fromkeys(addresses))
    if not unique:
        return 0, 0
    with store.tx() as conn:
        _write_points(store, conn, unique, at)
        points = _points(store, conn, unique)
        pids = [p for p, _ in points.values()]
        cids = sorted({c for _, c in points.values() if c is not None})
        blocked_points = _opted_out(store, conn, scope, POINT, pids)
        blocked_contacts = _opted_out(store, conn, scope, CONTACT, cids)
        todo = [
            (a, pid, cid) for a in unique
            for pid, cid in (points[a],)
            if pid not in blocked_points and (cid is None or cid not in blocked_contacts)
        ]
        if not todo:
            return 0, len(unique)
        template = store._outbox_row(
            _import_change(todo[0][0], scope, source, reason, mechanism, brand), 0, at)
        _write_opt_outs(store, conn, _new_event_ids(store, conn, len(todo)), todo, scope, at,
                        source, reason, mechanism, brand, template)
    return len(todo), len(unique) - len(todo)


def refresh_statistics(store: SQLStore) -> None:
    """After a bulk load: let PostgreSQL's planner see the new table sizes now rather than
    whenever autovacuum gets to it (stale statistics pick scans for the send-time filter).
    SQLite plans from its indexes and needs nothing."""
    if store.dialect != "postgresql":
        return
    try:
        with store.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "ANALYZE contact_points, consent_state, events")
    except SQLAlchemyError as exc:
        raise translate(exc) from exc


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
