"""The delivery worker: outbox -> deliveries -> signed POSTs (or handler calls) -> results.

Runs inside ``unsubkit serve`` (:func:`webhook_service`) and alone (``unsubkit webhooks
work``); any number of workers may share one database (see :mod:`unsubkit.hooks.store`).
Delivery is at least once: a worker killed after the receiver answered but before the result
was committed leaves a lease that expires, and the attempt is made again. Receivers
deduplicate on ``webhook-id`` or the payload's ``event_id``. Order is not guaranteed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx

from ..clock import Clock, system_clock
from ..errors import ConfigError, StoreError, UnsubkitError
from ..service import Unsubkit
from ..settings import Settings
from .backoff import RetryPolicy
from .handlers import HandlerRegistry
from .model import TargetKind
from .signing import sign_headers
from .store import Claim, HookStore, Outcome

__all__ = ["AttemptResult", "DeliveryWorker", "hook_store", "webhook_service"]

log = logging.getLogger("unsubkit.hooks")

USER_AGENT = "unsubkit-webhooks/1"
FAN_OUT_BATCH = 500


def hook_store(kit: Unsubkit) -> HookStore:
    engine = getattr(kit.store, "engine", None)
    if engine is None:
        raise ConfigError("webhooks need the SQL store")
    return HookStore(engine)


def worker_name() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(3)}"


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP-date: our own backoff is good enough
    return seconds if seconds >= 0 else None


@dataclass(frozen=True, slots=True)
class AttemptResult:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None


class DeliveryWorker:
    def __init__(
        self,
        store: HookStore,
        settings: Settings,
        *,
        clock: Clock = system_clock,
        name: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        handlers: HandlerRegistry | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.settings = settings
        self.cfg = settings.webhooks
        self.clock = clock
        self.name = name or worker_name()
        self.policy = RetryPolicy(self.cfg.backoff_base, self.cfg.backoff_factor, self.cfg.backoff_max,
                                  self.cfg.max_age)
        self.handlers = handlers or HandlerRegistry()
        self.rand = rand
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self.delivered = 0
        self.failed = 0

    @classmethod
    def from_kit(
        cls,
        kit: Unsubkit,
        *,
        name: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        handlers: HandlerRegistry | None = None,
    ) -> DeliveryWorker:
        return cls(hook_store(kit), kit.settings, clock=kit.clock, name=name, transport=transport,
                   handlers=handlers)

    # lifecycle ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[DeliveryWorker]:
        """The HTTP client for this worker's lifetime (redirects are failures, not followed)."""
        for problem in self.handlers.check(self.handler_specs()):
            log.warning("%s", problem)
        async with httpx.AsyncClient(
            transport=self._transport,
            follow_redirects=False,
            timeout=httpx.Timeout(self.cfg.timeout),
            limits=httpx.Limits(max_connections=self.cfg.concurrency),
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
        ) as client:
            self._client = client
            try:
                yield self
            finally:
                self._client = None

    def handler_specs(self) -> list[str]:
        names = list(self.settings.handlers)
        for brand in self.settings.brand_names:
            spec = self.settings.brand(brand).replace_default_with
            if spec:
                names.append(spec)
        return list(dict.fromkeys(names))

    # one round ----------------------------------------------------------------------------

    async def step(self, outcomes: list[Outcome], claim_limit: int) -> list[Claim]:
        """Record ``outcomes``, fan out and claim up to ``claim_limit``: one transaction."""
        while True:
            fanned, claims = await asyncio.to_thread(
                self.store.step, outcomes, now=self.clock(), worker=self.name, lease=self.cfg.lease,
                claim_limit=claim_limit, handlers=self.settings.handlers, fan_out_limit=FAN_OUT_BATCH,
            )
            outcomes = []
            # Nothing due yet but a large outbox backlog: keep fanning out.
            if claims or fanned < FAN_OUT_BATCH:
                return claims

    async def run_once(self) -> int:
        """Fan out, claim what is due, attempt it all, record the outcomes; returns attempts."""
        claims = await self.step([], self.cfg.concurrency)
        outcomes = list(await asyncio.gather(*(self.attempt(c) for c in claims)))
        if outcomes:
            await asyncio.to_thread(self.store.finish, outcomes, worker=self.name)
        return len(claims)

    async def drain(self, *, rounds: int = 10_000) -> int:
        """Attempt everything due now, repeatedly, until nothing is due (``work --once``)."""
        total = 0
        for _ in range(rounds):
            n = await self.run_once()
            total += n
            if n == 0:
                break
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: keep up to ``concurrency`` attempts in flight. Finished
        attempts are recorded together with the next claim, one transaction per step."""
        inflight: dict[asyncio.Task[Outcome], Claim] = {}
        done: list[Outcome] = []
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                free = self.cfg.concurrency - len(inflight)
                claimed: list[Claim] = []
                try:
                    claimed = await self.step(done, free)
                    done = []
                except StoreError as exc:
                    # Outcomes not recorded stay leased: retried after the lease, at least once.
                    log.warning("webhook worker: store unavailable (%s); retrying", exc)
                    done = []
                for c in claimed:
                    inflight[asyncio.create_task(self.attempt(c), name=f"webhook-{c.delivery.id}")] = c
                if claimed and len(claimed) == free:
                    timeout: float | None = self.cfg.poll_interval  # saturated: go on when one finishes
                elif claimed:
                    timeout = 0
                else:
                    timeout = self.cfg.poll_interval
                if timeout:
                    await asyncio.wait([stopping, *inflight], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                for t in [t for t in inflight if t.done()]:
                    inflight.pop(t)
                    done.append(t.result())
        finally:
            stopping.cancel()
            await self._finish(inflight, done)

    async def _finish(self, inflight: dict[asyncio.Task[Outcome], Claim], done: list[Outcome]) -> None:
        """Let attempts in flight finish (up to timeout + 1 s), record every outcome, and hand
        back claims that did not finish so another worker need not wait for their lease."""
        pending: set[asyncio.Task[Outcome]] = set()
        if inflight:
            finished, pending = await asyncio.wait(inflight, timeout=self.cfg.timeout + 1)
            done += [t.result() for t in finished]
        for t in pending:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        with contextlib.suppress(UnsubkitError):
            if done:
                await asyncio.to_thread(self.store.finish, done, worker=self.name)
            for t in pending:
                await asyncio.to_thread(self.store.release, inflight[t], worker=self.name)

    # one attempt --------------------------------------------------------------------------

    async def attempt(self, claim: Claim) -> Outcome:
        """Make the attempt (no database work): the outcome is recorded by the caller."""
        started = self.clock()
        d = claim.delivery
        try:
            if d.target_kind is TargetKind.WEBHOOK:
                result = await self.post(claim)
            else:
                result = await self.call_handler(claim)
        except Exception as exc:  # one attempt must never take the worker down
            log.exception("webhook delivery %s: unexpected error", d.id)
            result = AttemptResult(False, error=f"internal error: {type(exc).__name__}")
        now = self.clock()
        if result.ok:
            self.delivered += 1
            return Outcome(claim, True, started, now, result.status_code)
        self.failed += 1
        error = result.error or "failed"
        retry_at = self.policy.next_attempt(created_at=d.created_at, failed_attempts=claim.attempt, now=now,
                                            retry_after=result.retry_after, rand=self.rand)
        if retry_at is None:
            log.warning("delivery %s to %s is dead after %d attempts: %s", d.id, d.target, claim.attempt, error)
        else:
            log.info("delivery %s to %s failed (attempt %d: %s); retry in %.0fs",
                     d.id, d.target, claim.attempt, error, retry_at - now)
        return Outcome(claim, False, started, now, result.status_code, error, retry_at)

    async def post(self, claim: Claim) -> AttemptResult:
        ep = claim.endpoint
        if ep is None:
            return AttemptResult(False, error="endpoint removed")
        assert self._client is not None, "use DeliveryWorker.session()"
        body = claim.delivery.payload
        headers = sign_headers(ep.secrets(self.clock()), claim.delivery.msg_id, self.clock(), body)
        headers["Content-Type"] = "application/json"
        try:
            resp = await asyncio.wait_for(
                self._client.post(ep.url, content=body.encode("utf-8"), headers=headers),
                self.cfg.timeout,
            )
        except (TimeoutError, httpx.TimeoutException):
            return AttemptResult(False, error=f"timeout after {self.cfg.timeout:g}s")
        except httpx.HTTPError as exc:
            return AttemptResult(False, error=f"{type(exc).__name__}: {exc}"[:300])
        if 200 <= resp.status_code < 300:
            return AttemptResult(True, resp.status_code)
        snippet = resp.text[:200].strip().replace("\n", " ")
        return AttemptResult(False, resp.status_code, f"HTTP {resp.status_code} {snippet}".strip(),
                             _retry_after(resp.headers.get("retry-after")))

    async def call_handler(self, claim: Claim) -> AttemptResult:
        payload = json.loads(claim.delivery.payload)
        payload["webhook_id"] = claim.delivery.msg_id
        try:
            await self.handlers.call(claim.delivery.target, payload, timeout=self.cfg.timeout)
        except TimeoutError:
            return AttemptResult(False, error=f"handler timed out after {self.cfg.timeout:g}s")
        except UnsubkitError as exc:
            return AttemptResult(False, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a handler may raise anything
            return AttemptResult(False, error=f"{type(exc).__name__}: {exc}"[:500])
        return AttemptResult(True)


def webhook_service(kit: Unsubkit, _writer: object = None) -> contextlib.AbstractAsyncContextManager[DeliveryWorker]:
    """A background service for :func:`unsubkit.web.create_app` (``unsubkit serve``)."""

    @contextlib.asynccontextmanager
    async def run() -> AsyncIterator[DeliveryWorker]:
        worker = DeliveryWorker.from_kit(kit)
        stop = asyncio.Event()
        async with worker.session():
            task = asyncio.create_task(worker.run(stop), name="unsubkit-webhooks")
            try:
                yield worker
            finally:
                stop.set()
                await task

    return run()
