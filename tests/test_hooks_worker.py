"""The delivery worker against a real HTTP receiver on a loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from conftest import build_kit
from hooks_support import Receiver
from unsubkit.clock import FrozenClock
from unsubkit.hooks import DeliveryStatus, DeliveryWorker, HookStore, hook_store
from unsubkit.service import Unsubkit
from unsubkit.settings import Settings, WebhookSettings

FAST = WebhookSettings(timeout=1.0, lease=5.0, backoff_base=1.0, backoff_factor=2.0, backoff_max=10.0,
                       max_age=60.0, poll_interval=0.05, concurrency=4)


@pytest.fixture
def fast_kit(make_settings: Callable[..., Settings], clock: FrozenClock) -> Iterator[Unsubkit]:
    k = build_kit(make_settings(webhooks=FAST), clock)
    yield k
    k.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def run(worker: DeliveryWorker, rounds: int = 1) -> int:
    async def go() -> int:
        async with worker.session():
            n = 0
            for _ in range(rounds):
                n += await worker.run_once()
            return n

    return asyncio.run(go())


def setup(kit: Unsubkit, receiver: Receiver) -> tuple[HookStore, str, DeliveryWorker]:
    store = hook_store(kit)
    ep = store.add_endpoint(receiver.url, now=kit.clock())
    return store, ep.secret, DeliveryWorker.from_kit(kit, name="w1")


def test_delivers_a_signed_event(fast_kit: Unsubkit, receiver: Receiver) -> None:
    store, secret, worker = setup(fast_kit, receiver)
    ev = fast_kit.unsubscribe("jane@example.com", "marketing")
    assert run(worker) == 1
    (req,) = receiver.received()
    payload = req.verify(secret)
    assert payload["event_id"] == ev.id
    assert payload["type"] == "consent.opted_out"
    assert payload["address"] == "jane@example.com" and payload["purpose"] == "marketing"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["webhook-id"] == f"msg_{ev.id}_{store.endpoints()[0].id}"
    (d,) = store.deliveries()
    assert d.status is DeliveryStatus.DELIVERED and d.last_status == 200 and d.attempts == 1


def test_a_failing_receiver_is_retried_with_backoff(fast_kit: Unsubkit, receiver: Receiver,
                                                     clock: FrozenClock) -> None:
    store, secret, worker = setup(fast_kit, receiver)
    fast_kit.unsubscribe("jane@example.com", "marketing")
    receiver.status = 503
    assert run(worker) == 1
    (d,) = store.deliveries()
    assert d.status is DeliveryStatus.PENDING and d.last_status == 503 and "HTTP 503" in (d.last_error or "")
    # First retry within seconds: between half and all of backoff_base.
    assert 0.5 <= d.next_attempt_at - clock() <= 1.0
    assert run(worker) == 0  # not due yet
    clock.advance(1.0)
    receiver.status = 200
    assert run(worker) == 1
    reqs = receiver.received()
    assert len(reqs) == 2 and reqs[0].headers["webhook-id"] == reqs[1].headers["webhook-id"]
    reqs[1].verify(secret)
    assert store.deliveries()[0].status is DeliveryStatus.DELIVERED


def test_retry_after_from_the_receiver_is_honoured(fast_kit: Unsubkit, receiver: Receiver,
                                                    clock: FrozenClock) -> None:
    store, _, worker = setup(fast_kit, receiver)
    fast_kit.unsubscribe("jane@example.com", "marketing")
    receiver.status = 429
    receiver.extra_headers = {"Retry-After": "7"}
    run(worker)
    assert store.deliveries()[0].next_attempt_at - clock() == pytest.approx(7.0)


def test_timeouts_and_redirects_are_failures(fast_kit: Unsubkit, receiver: Receiver) -> None:
    store, _, worker = setup(fast_kit, receiver)
    fast_kit.unsubscribe("jane@example.com", "marketing")
    receiver.delay = 1.5  # beyond webhooks.timeout = 1 s
    run(worker)
    assert "timeout" in (store.deliveries()[0].last_error or "")
    receiver.delay = 0
    receiver.status = 302
    fast_kit.unsubscribe("joe@example.com", "marketing")
    run(worker)
    d = store.deliveries()[1]
    assert d.status is DeliveryStatus.PENDING and d.last_status == 302


def test_unreachable_receiver_goes_dead_after_max_age(fast_kit: Unsubkit, clock: FrozenClock) -> None:
    receiver = Receiver()  # never started: connection refused
    store, _, worker = setup(fast_kit, receiver)
    fast_kit.unsubscribe("jane@example.com", "marketing")
    store.fan_out(now=clock())
    attempts = 0
    while store.deliveries(status=DeliveryStatus.PENDING):
        attempts += run(worker)
        clock.advance(10)
        assert attempts < 50
    (d,) = store.deliveries(status=DeliveryStatus.DEAD)
    assert d.attempts == attempts >= 5
    assert "ConnectError" in (d.last_error or "")
    assert len(store.attempts(d.id)) == attempts
    # Dead letters come back with replay once the receiver is up.
    receiver.start()
    try:
        assert store.replay_dead(now=clock()) == 1
        assert run(worker) == 1
        assert len(receiver.received()) == 1
    finally:
        receiver.stop()


def test_run_loop_delivers_as_events_arrive(fast_kit: Unsubkit, receiver: Receiver) -> None:
    store, secret, worker = setup(fast_kit, receiver)

    async def go() -> None:
        stop = asyncio.Event()
        async with worker.session():
            task = asyncio.create_task(worker.run(stop))
            for i in range(20):
                await asyncio.to_thread(fast_kit.unsubscribe, f"user{i}@example.com", "marketing")
            await asyncio.to_thread(receiver.wait_for, lambda r: len(r) >= 20, 20)
            stop.set()
            await task

    asyncio.run(go())
    reqs = receiver.received()
    assert sorted(r.verify(secret)["address"] for r in reqs) == sorted(f"user{i}@example.com" for i in range(20))
    assert all(d.status is DeliveryStatus.DELIVERED for d in store.deliveries())


def test_stopping_lets_attempts_in_flight_finish(fast_kit: Unsubkit, receiver: Receiver) -> None:
    store, _, worker = setup(fast_kit, receiver)
    fast_kit.unsubscribe("jane@example.com", "marketing")
    receiver.delay = 3.0  # the attempt times out (1 s) while the worker is stopping

    async def go() -> None:
        stop = asyncio.Event()
        async with worker.session():
            task = asyncio.create_task(worker.run(stop))
            await asyncio.sleep(0.3)
            stop.set()
            await task

    asyncio.run(go())
    (d,) = store.deliveries()
    assert d.status is DeliveryStatus.PENDING and d.attempts == 1
    assert "timeout" in (d.last_error or "")
    assert d.next_attempt_at <= fast_kit.clock() + FAST.backoff_base


def test_the_lease_must_outlast_the_timeout() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="lease"):
        WebhookSettings(timeout=30, lease=30)
