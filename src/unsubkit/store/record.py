"""Recording consent changes, a batch at a time: the group-commit writer's hot path.

One transaction records a whole batch with a fixed number of statements (look up the contact
points, add the new ones, read the current state, insert the events, write the state rows,
insert the outbox rows), not a handful per change. Statements are built once with bind
parameters: building and cache-keying a fresh SQLAlchemy statement per row cost more than
running it.

The rule for one change is the one :func:`unsubkit.consent.history.subjects_of` states: an
opt-out lands on the contact (identity level, with an owning contact) or on the address; an
opt-in clears both. Changes are applied in order, so a later change in a batch sees the earlier
ones (a repeat within one batch is recorded with ``changed=False``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from itertools import chain
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from ..consent.history import subjects_of
from ..consent.model import Action, ConsentChange, ConsentLevel, Event, ScopeKind
from .schema import consent_state, contact_points, events, outbox, webhook_endpoints

__all__ = ["Annotate", "record_changes"]

Annotate = Callable[[ConsentChange, float], tuple[bool, str | None]]
#: (subject type, subject id, scope kind, purpose id, topic id): one consent_state row.
StateKey = tuple[str, int, str, int, int]

_SELECT_POINTS = select(contact_points.c.id, contact_points.c.address, contact_points.c.contact_id).where(
    contact_points.c.address.in_(bindparam("addresses", expanding=True))
)
_SELECT_STATE = select(
    consent_state.c.subject_type,
    consent_state.c.subject_id,
    consent_state.c.scope_kind,
    consent_state.c.purpose_id,
    consent_state.c.topic_id,
    consent_state.c.opted_out,
).where(
    # Not a row-value IN: SQLite answers ``(type, id) IN (VALUES ...)`` with a full scan. Two
    # plain INs search the unique key; the few extra rows this may return are never looked up.
    consent_state.c.subject_type.in_(bindparam("types", expanding=True)),
    consent_state.c.subject_id.in_(bindparam("ids", expanding=True)),
)
_INSERT_EVENTS = events.insert()
_INSERT_EVENTS_RETURNING = events.insert().returning(events.c.id, sort_by_parameter_order=True)
_ANY_ENDPOINT = select(webhook_endpoints.c.id).where(webhook_endpoints.c.deleted_at.is_(None)).limit(1)
# The same queries for SQLite's own driver (see ``_sqlite``), IN lists filled in per batch.
_SQLITE_POINTS = "SELECT id, address, contact_id FROM contact_points WHERE address IN ({})"
_SQLITE_ENDPOINTS = "SELECT id FROM webhook_endpoints WHERE deleted_at IS NULL LIMIT 1"
_SQLITE_STATE = (
    "SELECT subject_type, subject_id, scope_kind, purpose_id, topic_id, opted_out FROM consent_state"
    " WHERE subject_type IN ({}) AND subject_id IN ({})"
)
_INSERT_OUTBOX = outbox.insert()
_set = object.__setattr__
_STATE_KEY_COLUMNS = ["subject_type", "subject_id", "scope_kind", "purpose_id", "topic_id"]


_COMPILED: dict[tuple[int, str, tuple[str, ...]], tuple[str, tuple[str, ...] | None]] = {}


def _executemany(conn: Connection, stmt: Any, rows: list[dict[str, Any]]) -> None:
    """``conn.execute(stmt, rows)`` minus SQLAlchemy's per-row parameter processing, which cost
    more than the driver's own executemany: the statement is compiled once per dialect and column
    set, and the rows go to the driver as they are (plain str/int/float/bool/None values)."""
    keys = tuple(rows[0])
    ck = (id(stmt), conn.dialect.name, keys)
    compiled = _COMPILED.get(ck)
    if compiled is None:
        c = stmt.compile(dialect=conn.dialect, column_keys=list(keys))
        order = c.positiontup  # None for named parameter styles (psycopg)
        compiled = _COMPILED[ck] = (c.string, tuple(order) if order else None)
    sql, order = compiled
    if order is None:
        conn.exec_driver_sql(sql, rows)  # type: ignore[arg-type]
        return
    # itemgetter builds each row's tuple in C (a generator per row cost more than the insert).
    tuples = [(r[order[0]],) for r in rows] if len(order) == 1 else list(map(itemgetter(*order), rows))
    head, group, tail = _values_group(sql, len(order))
    raw = _sqlite(conn)
    if group and len(rows) > 1:
        # One multi-row INSERT per chunk instead of one step per row: sqlite3 releases and
        # retakes the GIL around every step, and under load each retake waits for the event loop.
        per = max(1, _MAX_VARIABLES // len(order))
        for start in range(0, len(tuples), per):
            chunk = tuples[start : start + per]
            raw.execute(f"{head}{', '.join([group] * len(chunk))}{tail}", tuple(chain.from_iterable(chunk)))
        return
    raw.executemany(sql, tuples)


def _sqlite(conn: Connection) -> Any:
    """The sqlite3 connection under ``conn`` (inside its transaction): the batch's statements go
    to it directly. SQLAlchemy's execution path (context, cursor wrapper, result rows) cost
    more per statement than SQLite's own work on a batch of a few dozen rows."""
    return conn.connection.dbapi_connection


def _placeholders(n: int) -> str:
    return ", ".join(["?"] * n)


#: Bind variables per statement: SQLite's historical default limit (newer builds allow more).
_MAX_VARIABLES = 999


@cache
def _values_group(sql: str, n: int) -> tuple[str, str, str]:
    """``INSERT ... VALUES (?, ?) ON CONFLICT ...`` -> (head, ``(?, ?)``, tail), or ``group`` empty
    when the statement is not a plain one-row VALUES insert (then rows go one step each)."""
    head, sep, rest = sql.partition(" VALUES ")
    group = "(" + ", ".join(["?"] * n) + ")"
    if not sep or not rest.startswith(group) or " VALUES " in rest:
        return sql, "", ""
    return head + sep, group, rest[len(group) :]


@cache
def _dialect_statements(dialect: str) -> tuple[Any, Any]:
    make = postgresql.insert if dialect == "postgresql" else sqlite.insert
    add_points = make(contact_points).on_conflict_do_nothing(index_elements=["address"])
    ins = make(consent_state)
    upsert_state = ins.on_conflict_do_update(
        index_elements=_STATE_KEY_COLUMNS,
        set_={
            "opted_out": ins.excluded.opted_out,
            "updated_at": ins.excluded.updated_at,
            "event_id": ins.excluded.event_id,
        },
    )
    return add_points, upsert_state


def _has_endpoints(conn: Connection, dialect: str) -> bool:
    if dialect == "sqlite":
        return _sqlite(conn).execute(_SQLITE_ENDPOINTS).fetchone() is not None
    return conn.execute(_ANY_ENDPOINT).first() is not None


def _select_points(conn: Connection, dialect: str, addresses: list[str]) -> list[Sequence[Any]]:
    """(id, address, contact id) of the contact points among ``addresses``."""
    if dialect != "sqlite":
        return list(conn.execute(_SELECT_POINTS, {"addresses": addresses}))
    raw, out = _sqlite(conn), []
    for start in range(0, len(addresses), _MAX_VARIABLES):
        part = addresses[start : start + _MAX_VARIABLES]
        out += raw.execute(_SQLITE_POINTS.format(_placeholders(len(part))), part).fetchall()
    return out


def _select_state(conn: Connection, dialect: str, types: list[str], ids: list[int]) -> list[Sequence[Any]]:
    """The state rows of these subjects (and possibly a few more: see ``_SELECT_STATE``)."""
    if dialect != "sqlite":
        return list(conn.execute(_SELECT_STATE, {"types": types, "ids": ids}))
    raw, out = _sqlite(conn), []
    per = _MAX_VARIABLES - len(types)
    for start in range(0, len(ids), per):
        part = ids[start : start + per]
        sql = _SQLITE_STATE.format(_placeholders(len(types)), _placeholders(len(part)))
        out += raw.execute(sql, (*types, *part)).fetchall()
    return out


def _points(conn: Connection, dialect: str, addresses: set[str], at: float) -> dict[str, tuple[int, int | None]]:
    """``address -> (contact point id, owning contact id)``, creating the missing points."""
    found = {r[1]: (r[0], r[2]) for r in _select_points(conn, dialect, list(addresses))}
    missing = sorted(addresses - found.keys())  # sorted: concurrent writers lock rows in one order
    if missing:
        add_points, _ = _dialect_statements(dialect)
        _executemany(conn, add_points, [{"address": a, "created_at": at} for a in missing])
        for r in _select_points(conn, dialect, missing):
            found[r[1]] = (r[0], r[2])
    return found


def _insert_events(conn: Connection, dialect: str, rows: list[dict[str, Any]]) -> list[int]:
    """Insert event rows; their ids, in order."""
    if dialect == "sqlite":
        # SQLite cannot return the ids of a multi-row insert in order, and SQLAlchemy then falls
        # back to one statement per row. The transaction holds SQLite's write lock (BEGIN
        # IMMEDIATE, see engine.py), so the next ids are known: max + 1, ... (what SQLite itself
        # would assign to an INTEGER PRIMARY KEY), and one executemany inserts them all.
        last = _sqlite(conn).execute("SELECT max(id) FROM events").fetchone()[0] or 0
        ids = list(range(last + 1, last + 1 + len(rows)))
        _executemany(conn, _INSERT_EVENTS, [{**row, "id": i} for row, i in zip(rows, ids, strict=True)])
        return ids
    return [r[0] for r in conn.execute(_INSERT_EVENTS_RETURNING, rows)]


def record_changes(
    conn: Connection, dialect: str, changes: Sequence[ConsentChange], at: float, annotate: Annotate | None,
    *, handlers: bool = True,
) -> list[Event]:
    """Record ``changes`` (in order) inside the caller's transaction; one event each.

    Every event gets an outbox row. When no handler is configured (``handlers``) and no webhook
    endpoint exists at this transaction, the row is written already processed: no worker has
    to come back for it in a write transaction of its own (on SQLite, one that would make the
    one-click writer wait for the lock). A brand's replacement handler always queues its row.
    An endpoint therefore receives the events recorded after it was added.
    """
    if not changes:
        return []
    points = _points(conn, dialect, {ch.address for ch in changes}, at)

    drafts: list[Event] = []
    for ch in changes:
        point_id, owner = points[ch.address]
        # Bulk email is a contact-level switch; without a contact it falls back to the address.
        identity = owner is not None and (
            ch.level is ConsentLevel.IDENTITY or ch.scope.kind is ScopeKind.BULK_EMAIL
        )
        drafts.append(Event(
            id=0, address=ch.address, scope=ch.scope, action=ch.action, source=ch.source,
            reason=ch.reason, mechanism=ch.mechanism, brand=ch.brand, message_id=ch.message_id,
            at=at, client_ip=ch.meta.client_ip, user_agent=ch.meta.user_agent, contact_id=owner,
            level=ConsentLevel.IDENTITY if identity else ConsentLevel.CHANNEL, point_id=point_id,
        ))
    subjects = [subjects_of(d) for d in drafts]
    wanted = {s for ss in subjects for s in ss}
    state: dict[StateKey, bool] = {
        (r[0], r[1], r[2], r[3], r[4]): bool(r[5])
        for r in _select_state(conn, dialect, sorted({t for t, _ in wanted}), sorted({i for _, i in wanted}))
    }

    event_rows: list[dict[str, Any]] = []
    writes: list[tuple[int, list[StateKey], bool]] = []  # (index, rows to write, opted_out)
    notes: list[tuple[bool, str | None]] = []
    for i, (ch, draft, subs) in enumerate(zip(changes, drafts, subjects, strict=True)):
        opted_out = ch.action is Action.OPT_OUT
        kind, pid, tid = str(ch.scope.kind), ch.scope.purpose_id or 0, ch.scope.topic_id or 0
        keys = [(s[0], s[1], kind, pid, tid) for s in subs]
        to_write = [k for k in keys if state.get(k, False) != opted_out]
        # A brand handler that replaces the built-in action: record and notify, change nothing.
        changed = bool(to_write) and not ch.replace_with
        if changed:
            for k in to_write:
                state[k] = opted_out  # later changes in this batch see this one
            writes.append((i, to_write, opted_out))
        suspected, evidence = annotate(ch, at) if annotate else (False, None)
        notes.append((suspected, evidence))
        ua = ch.meta.user_agent
        event_rows.append({
            "at": at,
            "address": ch.address,
            "contact_point_id": draft.point_id,
            "contact_id": draft.contact_id,
            "scope_kind": kind,
            "purpose_id": ch.scope.purpose_id,
            "topic_id": ch.scope.topic_id,
            "action": str(ch.action),
            "source": ch.source,
            "reason": ch.reason,
            "mechanism": str(ch.mechanism),
            "brand": ch.brand,
            "message_id": ch.message_id,
            "client_ip": ch.meta.client_ip,
            "user_agent": ua[:512] if ua else None,
            "changed": changed,
            "suspected_automated": suspected,
            "evidence": evidence,
            "level": draft.level.label,
        })

    ids = _insert_events(conn, dialect, event_rows)
    if writes:
        # The last write of a row in this batch is its state (and one upsert per row: PostgreSQL
        # refuses to touch a row twice in one statement).
        final: dict[StateKey, dict[str, Any]] = {}
        for i, keys, opted_out in writes:
            for k in keys:
                final[k] = {
                    "subject_type": k[0], "subject_id": k[1], "scope_kind": k[2], "purpose_id": k[3],
                    "topic_id": k[4], "opted_out": opted_out, "updated_at": at, "event_id": ids[i],
                }
        _, upsert_state = _dialect_statements(dialect)
        _executemany(conn, upsert_state, [final[k] for k in sorted(final)])
    done_at = None if handlers or _has_endpoints(conn, dialect) else at
    _executemany(
        conn,
        _INSERT_OUTBOX,
        [{"event_id": ids[i], "created_at": at, "replaced_by": ch.replace_with or None,
          "processed_at": None if ch.replace_with else done_at}
         for i, ch in enumerate(changes)],
    )
    # The drafts are ours alone until returned: fill in their last fields in place rather than
    # copying an 18-field frozen dataclass per change (``dataclasses.replace`` is slow).
    for d, i, r, (suspected, evidence) in zip(drafts, ids, event_rows, notes, strict=True):
        _set(d, "id", i)
        _set(d, "changed", r["changed"])
        _set(d, "suspected_automated", suspected)
        _set(d, "evidence", evidence)
    return drafts
