"""The consent store on SQLAlchemy Core: one class, identical behaviour on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..consent.decisions import ConsentState
from ..consent.model import (
    Action,
    ConsentChange,
    ConsentLevel,
    Event,
    Mechanism,
    Purpose,
    PurposeKind,
    Scope,
    ScopeKind,
    Topic,
)
from ..errors import ConsentError, StoreError, UnknownPurpose, UnknownTopic
from .engine import make_engine, migrate
from .errors import translate
from .schema import consent_state, contact_points, events, outbox, purposes, topics

__all__ = ["SQLStore", "row_to_event"]

T = TypeVar("T")
POINT = "point"
CONTACT = "contact"


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
    )


def _purpose(r: Any) -> Purpose:
    return Purpose(id=r.id, name=r.name, kind=PurposeKind(r.kind), description=r.description)


def _topic(r: Any) -> Topic:
    return Topic(id=r.id, name=r.name, purpose_id=r.purpose_id, description=r.description)


class SQLStore:
    """Consent store. Thread-safe (one engine, pooled connections); each call is a transaction.

    ``annotate`` (optional) is called per change inside :meth:`record` and may return
    ``(suspected_automated, evidence)``; it keeps audit heuristics out of the store.
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
        except SQLAlchemyError as exc:
            raise translate(exc) from exc

    def _read(self, fn: Callable[[Connection], T]) -> T:
        try:
            with self.engine.connect() as conn:
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

    def record(self, changes: Sequence[ConsentChange], at: float) -> list[Event]:
        if not changes:
            return []
        with self.tx() as conn:
            return [self._record_one(conn, ch, at) for ch in changes]

    def _record_one(self, conn: Connection, ch: ConsentChange, at: float) -> Event:
        point_id, owner = self._point(conn, ch.address, at)
        contact_id = ch.contact_id if ch.contact_id is not None else owner
        identity = ch.level is ConsentLevel.IDENTITY and contact_id is not None
        # Bulk email is a contact-level switch; without a contact it falls back to the address.
        if ch.scope.kind is ScopeKind.BULK_EMAIL and contact_id is not None:
            identity = True
        subject_type, subject_id = (CONTACT, contact_id) if identity else (POINT, point_id)
        pid = ch.scope.purpose_id or 0
        tid = ch.scope.topic_id or 0
        key = and_(
            consent_state.c.subject_type == subject_type,
            consent_state.c.subject_id == subject_id,
            consent_state.c.scope_kind == str(ch.scope.kind),
            consent_state.c.purpose_id == pid,
            consent_state.c.topic_id == tid,
        )
        prev = conn.execute(select(consent_state.c.opted_out).where(key)).scalar_one_or_none()
        opted_out = ch.action is Action.OPT_OUT
        changed = (prev is None and opted_out) or (prev is not None and bool(prev) != opted_out)
        if ch.replace_with:
            # The brand's handler replaces the default action: record, notify, change nothing.
            changed = False
        suspected, evidence = self.annotate(ch, at) if self.annotate else (False, None)
        event_id = conn.execute(
            events.insert()
            .values(
                at=at,
                address=ch.address,
                contact_point_id=point_id,
                contact_id=contact_id,
                scope_kind=str(ch.scope.kind),
                purpose_id=ch.scope.purpose_id,
                topic_id=ch.scope.topic_id,
                action=str(ch.action),
                source=ch.source,
                reason=ch.reason,
                mechanism=str(ch.mechanism),
                brand=ch.brand,
                message_id=ch.message_id,
                client_ip=ch.meta.client_ip,
                user_agent=(ch.meta.user_agent or None) and ch.meta.user_agent[:512],
                changed=changed,
                suspected_automated=suspected,
                evidence=evidence,
            )
            .returning(events.c.id)
        ).scalar_one()
        if (changed or prev is None) and not ch.replace_with:
            stmt = self._insert(consent_state).values(
                subject_type=subject_type,
                subject_id=subject_id,
                scope_kind=str(ch.scope.kind),
                purpose_id=pid,
                topic_id=tid,
                opted_out=opted_out,
                updated_at=at,
                event_id=event_id,
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["subject_type", "subject_id", "scope_kind", "purpose_id", "topic_id"],
                    set_={"opted_out": opted_out, "updated_at": at, "event_id": event_id},
                )
            )
        row: dict[str, Any] = {"event_id": event_id, "created_at": at}
        if ch.replace_with:
            row["replaced_by"] = ch.replace_with
        conn.execute(outbox.insert().values(**row))
        return Event(
            id=event_id,
            address=ch.address,
            scope=ch.scope,
            action=ch.action,
            source=ch.source,
            reason=ch.reason,
            mechanism=ch.mechanism,
            brand=ch.brand,
            message_id=ch.message_id,
            at=at,
            client_ip=ch.meta.client_ip,
            user_agent=ch.meta.user_agent,
            contact_id=contact_id,
            changed=changed,
            suspected_automated=suspected,
            evidence=evidence,
        )

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
        q = select(events).where(events.c.address == address).order_by(events.c.id)
        return self._read(lambda c: [row_to_event(r) for r in c.execute(q)])
