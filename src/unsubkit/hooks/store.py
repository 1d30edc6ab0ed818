"""Webhook tables on SQLAlchemy Core: endpoints, fan-out of the outbox, claims, results.

Exclusivity, the one property that matters with several workers on one database:

- PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` picks rows no other transaction holds, and
  the same transaction stamps them with a lease (``locked_until``, ``locked_by``) before it
  commits. Later claims filter on the lease, so a claimed attempt is never claimed again while
  its worker is within the lease. A worker killed mid-delivery simply lets the lease run out.
- SQLite: every transaction starts with ``BEGIN IMMEDIATE`` (see :mod:`unsubkit.store.engine`),
  so claims are serialized by the database's single writer; the lease works the same way.

Results are written only by the worker holding the claim (``locked_by`` and ``attempts`` must
still match), so a worker that overran its lease cannot overwrite a newer attempt's outcome.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, and_, bindparam, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..errors import WebhookError
from ..store.errors import translate
from ..store.schema import (
    events,
    outbox,
    purposes,
    topics,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
)
from ..store.sql import row_to_event
from .model import (
    Delivery,
    DeliveryStatus,
    Endpoint,
    EventFacts,
    TargetKind,
    encode_payload,
    event_payload,
    message_id,
)
from .signing import new_secret

__all__ = ["Claim", "HookStore", "Outcome"]

T = TypeVar("T")
D = webhook_deliveries
E = webhook_endpoints


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery this worker now owns until ``locked_until``; ``attempt`` is its number."""

    delivery: Delivery
    attempt: int
    locked_until: float
    endpoint: Endpoint | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt of a claim went (recorded by :meth:`HookStore.finish`)."""

    claim: Claim
    ok: bool
    started: float
    finished: float
    status_code: int | None = None
    error: str | None = None
    #: When to try again after a failure; ``None`` with ``ok=False`` means dead.
    retry_at: float | None = None


def _endpoint(r: Any) -> Endpoint:
    return Endpoint(
        id=r.id,
        url=r.url,
        description=r.description,
        brands=tuple(json.loads(r.brands)),
        purposes=tuple(json.loads(r.purposes)),
        event_types=tuple(json.loads(r.event_types)),
        created_at=r.created_at,
        secret=r.secret,
        previous_secret=r.previous_secret,
        previous_secret_until=r.previous_secret_until,
    )


def _delivery(r: Any) -> Delivery:
    return Delivery(
        id=r.id,
        event_id=r.event_id,
        target_kind=TargetKind(r.target_kind),
        target=r.target,
        msg_id=r.msg_id,
        event_type=r.event_type,
        payload=r.payload,
        status=DeliveryStatus(r.status),
        attempts=r.attempts,
        created_at=r.created_at,
        next_attempt_at=r.next_attempt_at,
        last_status=r.last_status,
        last_error=r.last_error,
        delivered_at=r.delivered_at,
        replay_of=r.replay_of,
    )


def _new_row(facts: EventFacts, kind: TargetKind, target: str, now: float, replay_of: int | None = None,
             body: str | None = None) -> dict[str, Any]:
    return {
        "event_id": facts.event.id,
        "target_kind": str(kind),
        "target": target,
        "msg_id": message_id(facts.event.id, target),
        "event_type": facts.type,
        "payload": body if body is not None else encode_payload(event_payload(facts)),
        "status": str(DeliveryStatus.PENDING),
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
        "replay_of": replay_of,
    }


class HookStore:
    """Thread-safe (one engine, pooled connections); each method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise translate(exc) from exc

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self.tx() as conn:
            return fn(conn)

    # endpoints ----------------------------------------------------------------------------

    def add_endpoint(
        self,
        url: str,
        *,
        now: float,
        brands: Sequence[str] = (),
        purposes: Sequence[str] = (),
        event_types: Sequence[str] = (),
        description: str = "",
    ) -> Endpoint:
        """Register ``url``; the returned endpoint carries its new secret (show it once)."""
        ep = Endpoint(
            id="ep_" + secrets.token_hex(8),
            url=url,
            description=description,
            brands=tuple(dict.fromkeys(brands)),
            purposes=tuple(dict.fromkeys(purposes)),
            event_types=tuple(dict.fromkeys(event_types)),
            created_at=now,
            secret=new_secret(),
        )
        with self.tx() as conn:
            conn.execute(
                E.insert().values(
                    id=ep.id, url=ep.url, description=ep.description, secret=ep.secret,
                    brands=json.dumps(list(ep.brands)), purposes=json.dumps(list(ep.purposes)),
                    event_types=json.dumps(list(ep.event_types)), created_at=now,
                )
            )
        return ep

    def _live(self, conn: Connection) -> list[Endpoint]:
        q = select(E).where(E.c.deleted_at.is_(None)).order_by(E.c.created_at, E.c.id)
        return [_endpoint(r) for r in conn.execute(q)]

    def endpoints(self) -> list[Endpoint]:
        return self._read(self._live)

    def endpoint(self, endpoint_id: str) -> Endpoint:
        q = select(E).where(E.c.id == endpoint_id, E.c.deleted_at.is_(None))
        row = self._read(lambda c: c.execute(q).first())
        if row is None:
            raise WebhookError(f"no webhook endpoint {endpoint_id!r}")
        return _endpoint(row)

    def remove_endpoint(self, endpoint_id: str, *, now: float) -> int:
        """Remove the endpoint and cancel its undelivered deliveries; returns how many."""
        self.endpoint(endpoint_id)
        with self.tx() as conn:
            conn.execute(update(E).where(E.c.id == endpoint_id).values(deleted_at=now))
            res = conn.execute(
                update(D)
                .where(D.c.target == endpoint_id, D.c.target_kind == str(TargetKind.WEBHOOK),
                       D.c.status == str(DeliveryStatus.PENDING))
                .values(status=str(DeliveryStatus.CANCELLED), locked_until=None, last_error="endpoint removed")
            )
            return int(res.rowcount or 0)

    def rotate_secret(self, endpoint_id: str, *, now: float, grace: float) -> Endpoint:
        """A new secret; the old one keeps signing (beside the new) for ``grace`` seconds."""
        old = self.endpoint(endpoint_id)
        fresh = new_secret()
        with self.tx() as conn:
            conn.execute(
                update(E).where(E.c.id == endpoint_id).values(
                    secret=fresh,
                    previous_secret=old.secret if grace > 0 else None,
                    previous_secret_until=now + grace if grace > 0 else None,
                )
            )
        return self.endpoint(endpoint_id)

    def counts(self) -> dict[str, dict[str, int]]:
        """Deliveries per target and status."""
        q = select(D.c.target, D.c.status, func.count()).group_by(D.c.target, D.c.status)
        out: dict[str, dict[str, int]] = {}
        for target, status, n in self._read(lambda c: c.execute(q).all()):
            out.setdefault(target, {})[status] = int(n)
        return out

    # fan-out ------------------------------------------------------------------------------

    def _facts(self, conn: Connection, where: Any, replaced: dict[int, str | None] | None = None) -> list[EventFacts]:
        q = (
            select(events, purposes.c.name.label("purpose_name"), topics.c.name.label("topic_name"))
            .select_from(
                events.outerjoin(purposes, purposes.c.id == events.c.purpose_id)
                .outerjoin(topics, topics.c.id == events.c.topic_id)
            )
            .where(where)
            .order_by(events.c.id)
        )
        rows = conn.execute(q).all()
        if replaced is None:
            ids = [r.id for r in rows]
            replaced = {}
            if ids:
                for eid, by in conn.execute(
                    select(outbox.c.event_id, outbox.c.replaced_by).where(
                        outbox.c.event_id.in_(ids), outbox.c.replaced_by.is_not(None)
                    )
                ):
                    replaced[eid] = by
        return [EventFacts(row_to_event(r), r.purpose_name, r.topic_name, replaced.get(r.id)) for r in rows]

    def _fan_out(self, conn: Connection, now: float, handlers: Sequence[str], limit: int) -> int:
        endpoints = self._live(conn)
        marked = 0
        if not endpoints and not handlers:
            # Nobody to deliver to (the default): mark pending rows processed in one statement,
            # without reading them. Only rows for a brand's replacement handler need the full
            # path below. This runs beside the one-click writer, once per recorded event.
            pending = (
                select(outbox.c.id)
                .where(outbox.c.processed_at.is_(None), outbox.c.replaced_by.is_(None))
                .order_by(outbox.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            result = conn.execute(update(outbox).where(outbox.c.id.in_(pending)).values(processed_at=now))
            marked = max(result.rowcount or 0, 0)
            limit -= marked
            if limit <= 0:
                return marked
        picked = conn.execute(
            select(outbox.c.id, outbox.c.event_id, outbox.c.replaced_by)
            .where(outbox.c.processed_at.is_(None))
            .order_by(outbox.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not picked:
            return marked
        replaced = {r.event_id: r.replaced_by for r in picked}
        rows: list[dict[str, Any]] = []
        # Nothing to deliver to (no endpoint, no handler): just mark the rows processed. This
        # runs in a write transaction beside the one-click writer; building payloads nobody
        # receives would hold the database lock for nothing.
        if endpoints or handlers or any(replaced.values()):
            for f in self._facts(conn, events.c.id.in_(list(replaced)), replaced):
                hooks = [ep for ep in endpoints if ep.accepts(f)]
                # A replacement handler runs for its brand's events even if not listed globally.
                targets = list(dict.fromkeys([*handlers, *([f.replaced_by] if f.replaced_by else [])]))
                if not hooks and not targets:
                    continue
                body = encode_payload(event_payload(f))
                rows += [_new_row(f, TargetKind.WEBHOOK, ep.id, now, body=body) for ep in hooks]
                rows += [_new_row(f, TargetKind.HANDLER, h, now, body=body) for h in targets]
        if rows:
            conn.execute(D.insert(), rows)
        conn.execute(update(outbox).where(outbox.c.id.in_([r.id for r in picked])).values(processed_at=now))
        return marked + len(picked)

    def fan_out(self, *, now: float, handlers: Sequence[str] = (), limit: int = 500) -> int:
        """Turn unprocessed outbox rows into deliveries (one per matching target), atomically:
        the outbox rows are marked processed in the same transaction. Returns rows processed."""
        with self.tx() as conn:
            return self._fan_out(conn, now, handlers, limit)

    def pending_outbox(self) -> int:
        q = select(func.count()).select_from(outbox).where(outbox.c.processed_at.is_(None))
        return int(self._read(lambda c: c.execute(q).scalar_one()))

    # claims and results -------------------------------------------------------------------

    def _claim(self, conn: Connection, now: float, worker: str, lease: float, limit: int) -> list[Claim]:
        if limit <= 0:
            return []
        due = and_(
            D.c.status == str(DeliveryStatus.PENDING),
            D.c.next_attempt_at <= now,
            or_(D.c.locked_until.is_(None), D.c.locked_until <= now),
        )
        until = now + lease
        rows = conn.execute(
            select(D).where(due).order_by(D.c.next_attempt_at, D.c.id).limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return []
        conn.execute(
            update(D).where(D.c.id.in_([r.id for r in rows]))
            .values(locked_until=until, locked_by=worker, attempts=D.c.attempts + 1)
        )
        wanted = {r.target for r in rows if r.target_kind == str(TargetKind.WEBHOOK)}
        eps = {
            r.id: _endpoint(r)
            for r in conn.execute(select(E).where(E.c.id.in_(wanted), E.c.deleted_at.is_(None)))
        } if wanted else {}
        return [Claim(_delivery(r), r.attempts + 1, until, eps.get(r.target)) for r in rows]

    def claim(self, *, now: float, worker: str, lease: float, limit: int) -> list[Claim]:
        """Take up to ``limit`` due deliveries for ``worker`` (see the module docstring)."""
        with self.tx() as conn:
            return self._claim(conn, now, worker, lease, limit)

    def _mine(self, claim: Claim, worker: str) -> Any:
        return and_(D.c.id == claim.delivery.id, D.c.locked_by == worker, D.c.attempts == claim.attempt,
                    D.c.status == str(DeliveryStatus.PENDING))

    def _finish(self, conn: Connection, outcomes: Sequence[Outcome], worker: str) -> int:
        if not outcomes:
            return 0
        conn.execute(webhook_attempts.insert(), [
            {
                "delivery_id": o.claim.delivery.id, "attempt": o.claim.attempt, "worker": worker,
                "started_at": o.started, "duration_ms": round((o.finished - o.started) * 1000, 3),
                "status_code": o.status_code, "error": o.error[:1000] if o.error else None,
            }
            for o in outcomes
        ])
        rows = []
        for o in outcomes:
            if o.ok:
                status, next_at, error = DeliveryStatus.DELIVERED, o.claim.delivery.next_attempt_at, None
            elif o.retry_at is None:
                status, next_at, error = DeliveryStatus.DEAD, o.claim.delivery.next_attempt_at, o.error or "failed"
            else:
                status, next_at, error = DeliveryStatus.PENDING, o.retry_at, o.error or "failed"
            rows.append({
                "b_id": o.claim.delivery.id, "b_attempt": o.claim.attempt, "b_status": str(status),
                "b_next": next_at, "b_error": error[:1000] if error else None, "b_code": o.status_code,
                "b_delivered": o.finished if o.ok else None,
            })
        # One statement for the whole batch; the guard keeps a lost claim's result out.
        stmt = (
            update(D)
            .where(D.c.id == bindparam("b_id"), D.c.locked_by == worker, D.c.attempts == bindparam("b_attempt"),
                   D.c.status == str(DeliveryStatus.PENDING))
            .values(status=bindparam("b_status"), next_attempt_at=bindparam("b_next"),
                    last_error=bindparam("b_error"), last_status=bindparam("b_code"),
                    delivered_at=bindparam("b_delivered"), locked_until=None)
        )
        res = conn.execute(stmt, rows[0] if len(rows) == 1 else rows)
        return int(res.rowcount or 0) if len(rows) == 1 else len(rows)

    def finish(self, outcomes: Sequence[Outcome], *, worker: str) -> int:
        """Record attempts' outcomes in one transaction. A claim whose lease ran out and was
        taken over is only logged, not applied. Returns 1/0 (applied or not) for a single
        outcome; for a batch, the number of outcomes recorded."""
        with self.tx() as conn:
            return self._finish(conn, outcomes, worker)

    def step(
        self,
        outcomes: Sequence[Outcome],
        *,
        now: float,
        worker: str,
        lease: float,
        claim_limit: int,
        handlers: Sequence[str] = (),
        fan_out_limit: int = 500,
    ) -> tuple[int, list[Claim]]:
        """One worker step in one transaction (one fsync on SQLite): record ``outcomes``, fan out
        pending outbox rows, claim what is due. Returns (outbox rows fanned out, claims)."""
        with self.tx() as conn:
            self._finish(conn, outcomes, worker)
            fanned = self._fan_out(conn, now, handlers, fan_out_limit)
            return fanned, self._claim(conn, now, worker, lease, claim_limit)

    def succeed(self, claim: Claim, *, worker: str, now: float, started: float, status_code: int | None) -> bool:
        """Mark delivered; ``False`` if the claim was lost (another worker owns it now)."""
        return bool(self.finish([Outcome(claim, True, started, now, status_code)], worker=worker))

    def fail(self, claim: Claim, *, worker: str, now: float, started: float, status_code: int | None,
             error: str, retry_at: float | None) -> bool:
        """Record a failed attempt: retry at ``retry_at``, or dead when it is ``None``."""
        return bool(self.finish([Outcome(claim, False, started, now, status_code, error, retry_at)], worker=worker))

    def release(self, claim: Claim, *, worker: str) -> None:
        """Give a claim back untried (worker shutting down): due again at once, attempt not counted."""
        with self.tx() as conn:
            conn.execute(
                update(D).where(self._mine(claim, worker))
                .values(locked_until=None, locked_by=None, attempts=D.c.attempts - 1)
            )

    # inspection and replay ----------------------------------------------------------------

    def deliveries(
        self,
        *,
        status: DeliveryStatus | None = None,
        target: str | None = None,
        event_id: int | None = None,
        limit: int = 1000,
    ) -> list[Delivery]:
        q = select(D).order_by(D.c.id).limit(limit)
        if status is not None:
            q = q.where(D.c.status == str(status))
        if target is not None:
            q = q.where(D.c.target == target)
        if event_id is not None:
            q = q.where(D.c.event_id == event_id)
        return self._read(lambda c: [_delivery(r) for r in c.execute(q)])

    def attempts(self, delivery_id: int) -> list[dict[str, Any]]:
        q = select(webhook_attempts).where(webhook_attempts.c.delivery_id == delivery_id).order_by(
            webhook_attempts.c.id
        )
        return self._read(lambda c: [dict(r._mapping) for r in c.execute(q)])

    def replay_dead(self, *, now: float, target: str | None = None) -> int:
        """Queue every dead delivery (of ``target``) again; the dead rows become ``replayed``."""
        with self.tx() as conn:
            q = select(D).where(D.c.status == str(DeliveryStatus.DEAD)).with_for_update(skip_locked=True)
            if target is not None:
                q = q.where(D.c.target == target)
            dead = conn.execute(q).all()
            live = {ep.id for ep in self._live(conn)}
            rows = [
                {
                    "event_id": r.event_id, "target_kind": r.target_kind, "target": r.target,
                    "msg_id": r.msg_id, "event_type": r.event_type, "payload": r.payload,
                    "status": str(DeliveryStatus.PENDING), "attempts": 0, "created_at": now,
                    "next_attempt_at": now, "replay_of": r.id,
                }
                for r in dead
                if r.target_kind != str(TargetKind.WEBHOOK) or r.target in live
            ]
            if rows:
                conn.execute(D.insert(), rows)
                conn.execute(
                    update(D).where(D.c.id.in_([r["replay_of"] for r in rows]))
                    .values(status=str(DeliveryStatus.REPLAYED))
                )
            return len(rows)

    def replay_events(
        self,
        *,
        now: float,
        since: float | None = None,
        event_ids: Sequence[int] = (),
        endpoint_id: str | None = None,
        handlers: Sequence[str] = (),
    ) -> int:
        """Deliver past events again (fresh payloads, same ``webhook-id``) to the endpoint, or to
        every endpoint whose filters match plus the configured handlers. Returns deliveries queued."""
        if since is None and not event_ids:
            raise WebhookError("say which events to replay (--since or --event)")
        if endpoint_id is not None:
            self.endpoint(endpoint_id)
        conds = []
        if since is not None:
            conds.append(events.c.at >= since)
        if event_ids:
            conds.append(events.c.id.in_(list(event_ids)))
        with self.tx() as conn:
            facts = self._facts(conn, or_(*conds))
            if event_ids:
                missing = set(event_ids) - {f.event.id for f in facts}
                if missing:
                    raise WebhookError(f"no event with id {min(missing)}")
            eps = [ep for ep in self._live(conn) if endpoint_id is None or ep.id == endpoint_id]
            rows: list[dict[str, Any]] = []
            for f in facts:
                rows += [_new_row(f, TargetKind.WEBHOOK, ep.id, now) for ep in eps if ep.accepts(f)]
                if endpoint_id is None:
                    targets = dict.fromkeys([*handlers, *([f.replaced_by] if f.replaced_by else [])])
                    rows += [_new_row(f, TargetKind.HANDLER, h, now) for h in targets]
            if rows:
                conn.execute(D.insert(), rows)
            return len(rows)
