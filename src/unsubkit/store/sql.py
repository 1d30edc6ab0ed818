"""The consent store on SQLAlchemy Core: one class, identical behaviour on SQLite and PostgreSQL.

Contacts live in :mod:`.contacts`, bulk reads and writes (send-time filter, import, export) in
:mod:`.bulk`; :class:`SQLStore` is the one object callers hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..consent.contacts import Contact, ContactRef
from ..consent.decisions import ConsentState
from ..consent.history import CONTACT, POINT
from ..consent.model import (
    Action,
    ConsentChange,
    Event,
    Mechanism,
    Purpose,
    PurposeKind,
    Scope,
    ScopeKind,
    Topic,
)
from ..errors import ConsentError, StoreError, UnknownPurpose, UnknownTopic
from . import bulk as _bulk
from . import contacts as _contacts
from .engine import READ_ONLY, make_engine, migrate
from .errors import DB_ERRORS, translate
from .record import record_changes
from .rows import row_to_event, scope_key
from .schema import consent_state, contact_points, events, purposes, topics

__all__ = ["CONTACT", "POINT", "SQLStore", "row_to_event", "scope_key"]

T = TypeVar("T")


def _purpose(r: Any) -> Purpose:
    return Purpose(id=r.id, name=r.name, kind=PurposeKind(r.kind), description=r.description)


def _topic(r: Any) -> Topic:
    return Topic(id=r.id, name=r.name, purpose_id=r.purpose_id, description=r.description)


class SQLStore:
    """Consent store. Thread-safe (one engine, pooled connections); each call is a transaction.

    ``annotate`` (optional) is called per change inside :meth:`record` and may return
    ``(suspected_automated, evidence)``; it keeps audit heuristics out of the store.

    ``handlers`` says whether custom event handlers are configured (``Settings.handlers``).
    Without handlers and without a webhook endpoint, :meth:`record` writes outbox rows already
    processed: nobody is there to deliver to (see :func:`.record.record_changes`).
    """

    def __init__(
        self,
        url_or_engine: str | Engine,
        *,
        annotate: Callable[[ConsentChange, float], tuple[bool, str | None]] | None = None,
    ) -> None:
        self.engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        self.dialect = self.engine.dialect.name
        self.annotate = annotate
        self.handlers = True

    # plumbing -----------------------------------------------------------------------------

    def migrate(self) -> None:
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except DB_ERRORS as exc:
            raise translate(exc) from exc

    def _read(self, fn: Callable[[Connection], T]) -> T:
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{READ_ONLY: True})
                return fn(conn)
        except SQLAlchemyError as exc:
            raise translate(exc) from exc

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    # catalog ------------------------------------------------------------------------------

    def add_purpose(self, name: str, kind: PurposeKind, description: str = "", *, at: float = 0.0) -> Purpose:
        name = name.strip()
        if not name:
            raise ConsentError("a purpose needs a name")
        try:
            with self.tx() as conn:
                pid = conn.execute(
                    purposes.insert().values(
                        name=name, kind=str(kind), description=description, created_at=at
                    ).returning(purposes.c.id)
                ).scalar_one()
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise ConsentError(f"purpose {name!r} already exists") from None
            raise
        return Purpose(pid, name, kind, description)

    def ensure_purpose(self, name: str, kind: PurposeKind, description: str = "") -> Purpose:
        try:
            return self.purpose(name)
        except UnknownPurpose:
            pass
        try:
            return self.add_purpose(name, kind, description)
        except ConsentError:
            return self.purpose(name)

    def purposes(self) -> list[Purpose]:
        q = select(purposes).where(purposes.c.deleted_at.is_(None)).order_by(purposes.c.id)
        return self._read(lambda c: [_purpose(r) for r in c.execute(q)])

    def purpose(self, name_or_id: str | int) -> Purpose:
        col = purposes.c.id if isinstance(name_or_id, int) else purposes.c.name
        q = select(purposes).where(col == name_or_id, purposes.c.deleted_at.is_(None))
        row = self._read(lambda c: c.execute(q).first())
        if row is None:
            raise UnknownPurpose(f"unknown purpose {name_or_id!r}")
        return _purpose(row)

    def find_purpose(self, purpose_id: int) -> Purpose | None:
        """By id, including deleted purposes (tokens keep their send-time ids)."""
        q = select(purposes).where(purposes.c.id == purpose_id)
        row = self._read(lambda c: c.execute(q).first())
        return _purpose(row) if row else None

    def add_topic(self, purpose_id: int, name: str, description: str = "", *, at: float = 0.0) -> Topic:
        name = name.strip()
        if not name:
            raise ConsentError("a topic needs a name")
        self.purpose(purpose_id)
        try:
            with self.tx() as conn:
                tid = conn.execute(
                    topics.insert().values(
                        purpose_id=purpose_id, name=name, description=description, created_at=at
                    ).returning(topics.c.id)
                ).scalar_one()
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise ConsentError(f"topic {name!r} already exists in this purpose") from None
            raise
        return Topic(tid, name, purpose_id, description)

    def topics(self, purpose_id: int | None = None) -> list[Topic]:
        q = select(topics).where(topics.c.deleted_at.is_(None)).order_by(topics.c.id)
        if purpose_id is not None:
            q = q.where(topics.c.purpose_id == purpose_id)
        return self._read(lambda c: [_topic(r) for r in c.execute(q)])

    def topic(self, purpose_id: int, name_or_id: str | int) -> Topic:
        col = topics.c.id if isinstance(name_or_id, int) else topics.c.name
        q = select(topics).where(
            col == name_or_id, topics.c.purpose_id == purpose_id, topics.c.deleted_at.is_(None)
        )
        row = self._read(lambda c: c.execute(q).first())
        if row is None:
            raise UnknownTopic(f"unknown topic {name_or_id!r} in this purpose")
        return _topic(row)

    def find_topic(self, topic_id: int) -> Topic | None:
        q = select(topics).where(topics.c.id == topic_id)
        row = self._read(lambda c: c.execute(q).first())
        return _topic(row) if row else None

    def catalog_names(self) -> tuple[dict[int, str], dict[int, str]]:
        """Names of every purpose and topic ever created (deleted ones too), by id."""

        def q(conn: Connection) -> tuple[dict[int, str], dict[int, str]]:
            ps = {r.id: r.name for r in conn.execute(select(purposes.c.id, purposes.c.name))}
            ts = {r.id: r.name for r in conn.execute(select(topics.c.id, topics.c.name))}
            return ps, ts

        return self._read(q)

    # consent ------------------------------------------------------------------------------

    def _point(self, conn: Connection, address: str, at: float) -> tuple[int, int | None]:
        row = conn.execute(
            select(contact_points.c.id, contact_points.c.contact_id).where(
                contact_points.c.address == address
            )
        ).first()
        if row is not None:
            return row.id, row.contact_id
        conn.execute(
            self._insert(contact_points)
            .values(address=address, created_at=at)
            .on_conflict_do_nothing(index_elements=["address"])
        )
        row = conn.execute(
            select(contact_points.c.id, contact_points.c.contact_id).where(
                contact_points.c.address == address
            )
        ).one()
        return row.id, row.contact_id

    def point_info(self, address: str) -> tuple[int, int | None] | None:
        """``(contact point id, owning contact id)`` of a known address, else ``None``."""
        q = select(contact_points.c.id, contact_points.c.contact_id).where(
            contact_points.c.address == address
        )
        row = self._read(lambda c: c.execute(q).first())
        return (row.id, row.contact_id) if row is not None else None

    def contact_of(self, address: str) -> int | None:
        info = self.point_info(address)
        return info[1] if info else None

    def record(self, changes: Sequence[ConsentChange], at: float) -> list[Event]:
        """Apply ``changes`` in order, in one transaction, with a fixed number of statements per
        batch (see :mod:`.record`; the same rule as :meth:`_record_one`)."""
        if not changes:
            return []
        with self.tx() as conn:
            return record_changes(conn, self.dialect, changes, at, self.annotate, handlers=self.handlers)

    @staticmethod
    def _outbox_row(ch: ConsentChange, event_id: int, at: float) -> dict[str, Any]:
        """The outbox row written with every event (also used by bulk imports)."""
        row: dict[str, Any] = {"event_id": event_id, "created_at": at}
        if ch.replace_with:
            row["replaced_by"] = ch.replace_with
        return row

    def _record_one(self, conn: Connection, ch: ConsentChange, at: float) -> Event:
        """One change inside the caller's transaction (the same code as :meth:`record`). The
        address's *current* contact decides where identity-level consent goes; a token's
        send-time contact id may name a contact deleted or reorganised since."""
        return record_changes(conn, self.dialect, [ch], at, self.annotate, handlers=self.handlers)[0]

    def state(self, address: str) -> ConsentState:
        def q(conn: Connection) -> ConsentState:
            row = conn.execute(
                select(contact_points.c.id, contact_points.c.contact_id).where(
                    contact_points.c.address == address
                )
            ).first()
            if row is None:
                return ConsentState()
            subject = and_(consent_state.c.subject_type == POINT, consent_state.c.subject_id == row.id)
            if row.contact_id is not None:
                subject = or_(
                    subject,
                    and_(
                        consent_state.c.subject_type == CONTACT,
                        consent_state.c.subject_id == row.contact_id,
                    ),
                )
            rows = conn.execute(
                select(consent_state.c.scope_kind, consent_state.c.purpose_id, consent_state.c.topic_id)
                .where(subject, consent_state.c.opted_out.is_(True))
            ).all()
            return ConsentState(
                purposes_out=frozenset(r.purpose_id for r in rows if r.scope_kind == ScopeKind.PURPOSE),
                topics_out=frozenset(r.topic_id for r in rows if r.scope_kind == ScopeKind.TOPIC),
                bulk_email_blocked=any(r.scope_kind == ScopeKind.BULK_EMAIL for r in rows),
            )

        return self._read(q)

    def events(self, address: str) -> list[Event]:
        """Events recorded through this address, oldest first."""
        q = select(events).where(events.c.address == address).order_by(events.c.id)
        return self._read(lambda c: [row_to_event(r) for r in c.execute(q)])

    def history_events(self, address: str) -> tuple[int | None, int | None, list[Event]]:
        """``(point id, contact id, events)``: every event that shaped this address's state —
        its own, and those that wrote its current contact's rows (through any address)."""

        def q(conn: Connection) -> tuple[int | None, int | None, list[Event]]:
            row = conn.execute(
                select(contact_points.c.id, contact_points.c.contact_id).where(
                    contact_points.c.address == address
                )
            ).first()
            if row is None:
                return None, None, []
            cond = events.c.contact_point_id == row.id
            if row.contact_id is not None:
                cond = or_(cond, and_(
                    events.c.contact_id == row.contact_id,
                    or_(events.c.level == "identity", events.c.action == str(Action.OPT_IN)),
                ))
            evs = [row_to_event(r) for r in conn.execute(select(events).where(cond).order_by(events.c.id))]
            return row.id, row.contact_id, evs

        return self._read(q)

    # contacts (see .contacts) -------------------------------------------------------------

    def add_contact(
        self, external_id: str | None = None, addresses: Iterable[str] = (), *, at: float,
        source: str, mechanism: Mechanism,
    ) -> Contact:
        with self.tx() as conn:
            return _contacts.add_contact(self, conn, external_id, list(addresses), at=at,
                                         source=source, mechanism=mechanism)

    def find_contact(self, ref: ContactRef, *, include_deleted: bool = True) -> Contact:
        return self._read(lambda c: _contacts.find_contact(c, ref, include_deleted=include_deleted))

    def link_address(
        self, ref: ContactRef, address: str, *, move: bool = False, at: float, source: str,
        mechanism: Mechanism,
    ) -> tuple[Contact, list[Event]]:
        with self.tx() as conn:
            return _contacts.link(self, conn, ref, address, move=move, at=at, source=source,
                                  mechanism=mechanism)

    def unlink_address(
        self, address: str, *, at: float, source: str, mechanism: Mechanism
    ) -> tuple[int, list[Event]]:
        with self.tx() as conn:
            return _contacts.unlink(self, conn, address, at=at, source=source, mechanism=mechanism)

    def delete_contact(
        self, ref: ContactRef, *, at: float, source: str, mechanism: Mechanism
    ) -> tuple[Contact, list[Event]]:
        with self.tx() as conn:
            return _contacts.delete(self, conn, ref, at=at, source=source, mechanism=mechanism)

    def contact_opt_outs(self, contact_id: int) -> list[Scope]:
        return self._read(lambda c: _contacts.contact_opt_outs(c, contact_id))

    def list_contacts(self, *, include_deleted: bool = False, limit: int | None = None) -> list[Contact]:
        return self._read(lambda c: _contacts.list_contacts(c, include_deleted=include_deleted,
                                                            limit=limit))

    # bulk (see .bulk) ---------------------------------------------------------------------

    def blocked_addresses(self, purpose_id: int, topic_id: int | None) -> Iterator[tuple[str, list[str]]]:
        return _bulk.blocked_addresses(self, purpose_id, topic_id)

    def bulk_opt_out(
        self, addresses: Sequence[str], scope: Scope, *, at: float, source: str, reason: str,
        mechanism: Mechanism, brand: str,
    ) -> tuple[int, int]:
        return _bulk.bulk_opt_out(self, addresses, scope, at=at, source=source, reason=reason,
                                  mechanism=mechanism, brand=brand)

    def refresh_statistics(self) -> None:
        _bulk.refresh_statistics(self)

    def iter_state(self, *, include_opted_in: bool = False) -> Iterator[_bulk.StateRow]:
        return _bulk.iter_state(self, include_opted_in=include_opted_in)

    def iter_events(
        self, *, since: float | None = None, until: float | None = None,
        mechanism: Mechanism | None = None, address: str | None = None,
        suspected: bool | None = None, limit: int | None = None,
    ) -> Iterator[Event]:
        return _bulk.iter_events(self, since=since, until=until, mechanism=mechanism,
                                 address=address, suspected=suspected, limit=limit)
