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
from .store import Claim, HookStore

__all__ = ["AttemptResult", "DeliveryWorker", "hook_store", "webhook_service"]

log = logging.getLogger("unsubkit.hooks")

USER_AGENT = "unsubkit-webhooks/1"


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

    async def fan_out(self) -> int:
        total = 0
        while True:
            n = await asyncio.to_thread(self.store.fan_out, now=self.clock(), handlers=self.settings.handlers)
            total += n
            if n < 500:
                return total

    async def claim(self, limit: int) -> list[Claim]:
        return await asyncio.to_thread(
            self.store.claim, now=self.clock(), worker=self.name, lease=self.cfg.lease, limit=limit
        )

    async def run_once(self) -> int:
        """Fan out, claim what is due, attempt it all; returns attempts made."""
        await self.fan_out()
        claims = await self.claim(self.cfg.concurrency)
        await asyncio.gather(*(self.attempt(c) for c in claims))
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
        """Until ``stop`` is set: keep up to ``concurrency`` attempts in flight."""
        inflight: dict[asyncio.Task[None], Claim] = {}
        while not stop.is_set():
            claimed: list[Claim] = []
            free = self.cfg.concurrency - len(inflight)
            try:
                await self.fan_out()
                if free > 0:
                    claimed = await self.claim(free)
            except StoreError as exc:
                log.warning("webhook worker: store unavailable (%s); retrying", exc)
            for c in claimed:
                task = asyncio.create_task(self.attempt(c), name=f"webhook-{c.delivery.id}")
                inflight[task] = c
            if claimed and len(claimed) == free:
                # Saturated: go again as soon as one attempt finishes.
                done, _ = await asyncio.wait(inflight, timeout=self.cfg.poll_interval,
                                             return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    inflight.pop(t, None)
                continue
            if not claimed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.cfg.poll_interval)
            for t in [t for t in inflight if t.done()]:
                inflight.pop(t, None)
        await self._finish(inflight)

    async def _finish(self, inflight: dict[asyncio.Task[None], Claim]) -> None:
        if not inflight:
            return
        _done, pending = await asyncio.wait(inflight, timeout=self.cfg.timeout + 1)
        for t in pending:
            t.cancel()
        for t in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
            # Hand the claim back so another worker need not wait for the lease to run out.
            with contextlib.suppress(UnsubkitError):
                await asyncio.to_thread(self.store.release, inflight[t], worker=self.name)

    # one attempt --------------------------------------------------------------------------

    async def attempt(self, claim: Claim) -> None:
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
        try:
            if result.ok:
                self.delivered += 1
                await asyncio.to_thread(self.store.succeed, claim, worker=self.name, now=now, started=started,
                                        status_code=result.status_code)
                return
            self.failed += 1
            retry_at = self.policy.next_attempt(created_at=d.created_at, failed_attempts=claim.attempt, now=now,
                                                retry_after=result.retry_after, rand=self.rand)
            error = result.error or "failed"
            await asyncio.to_thread(self.store.fail, claim, worker=self.name, now=now, started=started,
                                    status_code=result.status_code, error=error, retry_at=retry_at)
            if retry_at is None:
                log.warning("delivery %s to %s is dead after %d attempts: %s", d.id, d.target, claim.attempt, error)
            else:
                log.info("delivery %s to %s failed (attempt %d: %s); retry in %.0fs",
                         d.id, d.target, claim.attempt, error, retry_at - now)
        except StoreError as exc:
            # The lease runs out and the attempt is made again: at least once.
            log.warning("delivery %s: cannot record the result (%s)", d.id, exc)

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


def webhook_service(kit: Unsubkit) -> contextlib.AbstractAsyncContextManager[DeliveryWorker]:
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
