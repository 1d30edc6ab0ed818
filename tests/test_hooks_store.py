"""Outbox, fan-out, claims and results on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from conftest import build_kit
from unsubkit.clock import FrozenClock
from unsubkit.consent.model import Action, ConsentChange, Mechanism, PurposeKind, Scope
from unsubkit.errors import StoreError, WebhookError
from unsubkit.hooks import DeliveryStatus, HookStore, TargetKind, hook_store
from unsubkit.service import Unsubkit
from unsubkit.settings import Settings
from unsubkit.store import SQLStore
from unsubkit.store.schema import events, outbox


@pytest.fixture
def store(kit: Unsubkit) -> HookStore:
    return hook_store(kit)


def count(kit: Unsubkit, table: object, *where: object) -> int:
    with kit.store.engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())  # type: ignore[arg-type]


def test_every_event_has_its_outbox_row(kit: Unsubkit, store: HookStore, clock: FrozenClock) -> None:
    store.add_endpoint("https://a.example/hook", now=clock())
    ev = kit.unsubscribe("jane@example.com", "marketing")
    kit.resubscribe("jane@example.com", "marketing")
    assert count(kit, events) == 2
    assert count(kit, outbox) == 2
    assert count(kit, outbox, outbox.c.event_id == ev.id, outbox.c.processed_at.is_(None)) == 1


def test_with_nobody_listening_outbox_rows_are_written_processed(kit: Unsubkit, store: HookStore,
                                                                  clock: FrozenClock) -> None:
    """No endpoint, no handler: nothing for a worker to come back for (it would need a write
    transaction beside the one-click writer). An endpoint added later gets what follows."""
    assert kit.store.handlers is False  # type: ignore[attr-defined]  # the kit's settings name none
    before = kit.unsubscribe("jane@example.com", "marketing")
    assert count(kit, outbox, outbox.c.event_id == before.id, outbox.c.processed_at.is_(None)) == 0
    assert count(kit, outbox, outbox.c.event_id == before.id) == 1
    ep = store.add_endpoint("https://a.example/hook", now=clock())
    after = kit.resubscribe("jane@example.com", "marketing")
    assert count(kit, outbox, outbox.c.event_id == after.id, outbox.c.processed_at.is_(None)) == 1
    assert store.fan_out(now=clock()) == 1
    assert {(d.event_id, d.target) for d in store.deliveries()} == {(after.id, ep.id)}
    # A removed endpoint is nobody again.
    store.remove_endpoint(ep.id, now=clock())
    gone = kit.unsubscribe("jane@example.com", "marketing")
    assert count(kit, outbox, outbox.c.event_id == gone.id, outbox.c.processed_at.is_(None)) == 0


def test_configured_handlers_keep_outbox_rows_pending(kit: Unsubkit) -> None:
    kit.store.handlers = True  # type: ignore[attr-defined]  # as when Settings.handlers names one
    ev = kit.unsubscribe("jane@example.com", "marketing")
    assert count(kit, outbox, outbox.c.event_id == ev.id, outbox.c.processed_at.is_(None)) == 1


def test_a_failed_transaction_leaves_neither_event_nor_outbox_row(settings: Settings, clock: FrozenClock) -> None:
    base = build_kit(settings, clock)
    calls = 0

    def annotate(_ch: object, _at: float) -> tuple[bool, str | None]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise StoreError("crash between the event and its notification")
        return False, None

    store = SQLStore(settings.database_url, annotate=annotate)
    chs = [
        ConsentChange(address=addr, scope=Scope.purpose(base.store.purpose("marketing").id), action=Action.OPT_OUT,
                      source="API", reason="API", mechanism=Mechanism.API)
        for addr in ("a@example.com", "b@example.com")
    ]
    with pytest.raises(StoreError):
        store.record(chs, clock())
    assert count(base, events) == 0
    assert count(base, outbox) == 0
    store.close()
    base.close()


def test_fan_out_applies_filters_and_marks_outbox_processed(kit: Unsubkit, store: HookStore,
                                                            clock: FrozenClock) -> None:
    kit.store.ensure_purpose("news", PurposeKind.COMMERCIAL)
    all_ = store.add_endpoint("https://a.example/hook", now=clock())
    outs = store.add_endpoint("https://b.example/hook", now=clock(), event_types=["consent.opted_out"])
    news = store.add_endpoint("https://c.example/hook", now=clock(), purposes=["news"])
    acme = store.add_endpoint("https://d.example/hook", now=clock(), brands=["acme"])
    e1 = kit.unsubscribe("jane@example.com", "marketing")
    e2 = kit.resubscribe("jane@example.com", "marketing")
    e3 = kit.unsubscribe("joe@example.com", "news")
    assert store.fan_out(now=clock(), handlers=["mod:fn"]) == 3
    assert store.fan_out(now=clock()) == 0  # nothing twice
    got = {(d.event_id, d.target) for d in store.deliveries()}
    assert got == {
        (e1.id, all_.id), (e2.id, all_.id), (e3.id, all_.id),
        (e1.id, outs.id), (e3.id, outs.id),
        (e3.id, news.id),
        (e1.id, "mod:fn"), (e2.id, "mod:fn"), (e3.id, "mod:fn"),
    }
    assert acme.id not in {t for _, t in got}
    d = next(d for d in store.deliveries(event_id=e3.id) if d.target == news.id)
    payload = json.loads(d.payload)
    assert payload["event_id"] == e3.id and payload["purpose"] == "news" and payload["address"] == "joe@example.com"
    assert d.msg_id == f"msg_{e3.id}_{news.id}"
    assert d.status is DeliveryStatus.PENDING and d.attempts == 0
    handler = next(d for d in store.deliveries(event_id=e1.id) if d.target == "mod:fn")
    assert handler.target_kind is TargetKind.HANDLER
    assert count(kit, outbox, outbox.c.processed_at.is_(None)) == 0


def test_a_claim_is_exclusive_until_its_lease_runs_out(kit: Unsubkit, store: HookStore, clock: FrozenClock) -> None:
    store.add_endpoint("https://a.example/hook", now=clock())
    kit.unsubscribe("jane@example.com", "marketing")
    store.fan_out(now=clock())
    a = store.claim(now=clock(), worker="A", lease=30, limit=10)
    assert len(a) == 1 and a[0].attempt == 1 and a[0].endpoint is not None
    assert store.claim(now=clock(), worker="B", lease=30, limit=10) == []
    clock.advance(31)
    b = store.claim(now=clock(), worker="B", lease=30, limit=10)
    assert [c.delivery.id for c in b] == [a[0].delivery.id] and b[0].attempt == 2
    # A overran its lease: its late result must not overwrite B's attempt.
    assert not store.succeed(a[0], worker="A", now=clock(), started=clock(), status_code=200)
    assert store.succeed(b[0], worker="B", now=clock(), started=clock(), status_code=204)
    d = store.deliveries()[0]
    assert d.status is DeliveryStatus.DELIVERED and d.attempts == 2 and d.last_status == 204
    assert [r["worker"] for r in store.attempts(d.id)] == ["A", "B"]


def test_failures_retry_then_die_and_replay_brings_them_back(kit: Unsubkit, store: HookStore,
                                                              clock: FrozenClock) -> None:
    store.add_endpoint("https://a.example/hook", now=clock())
    kit.unsubscribe("jane@example.com", "marketing")
    store.fan_out(now=clock())
    (c,) = store.claim(now=clock(), worker="A", lease=30, limit=10)
    assert store.fail(c, worker="A", now=clock(), started=clock(), status_code=500, error="HTTP 500",
                      retry_at=clock() + 5)
    assert store.claim(now=clock() + 4, worker="A", lease=30, limit=10) == []
    (c2,) = store.claim(now=clock() + 5, worker="A", lease=30, limit=10)
    assert store.fail(c2, worker="A", now=clock(), started=clock(), status_code=None, error="timeout", retry_at=None)
    (dead,) = store.deliveries(status=DeliveryStatus.DEAD)
    assert dead.last_error == "timeout" and dead.attempts == 2
    assert store.claim(now=clock() + 10**6, worker="A", lease=30, limit=10) == []
    assert store.replay_dead(now=clock()) == 1
    (again,) = store.deliveries(status=DeliveryStatus.PENDING)
    assert again.replay_of == dead.id and again.msg_id == dead.msg_id and again.payload == dead.payload
    assert store.deliveries(status=DeliveryStatus.REPLAYED)[0].id == dead.id
    assert store.deliveries(status=DeliveryStatus.DEAD) == []


def test_replay_events_by_time_or_id_respects_filters(kit: Unsubkit, store: HookStore, clock: FrozenClock) -> None:
    e1 = kit.unsubscribe("jane@example.com", "marketing")
    clock.advance(3600)
    e2 = kit.resubscribe("jane@example.com", "marketing")
    store.fan_out(now=clock())  # no endpoint yet: nothing delivered
    assert store.deliveries() == []
    ep = store.add_endpoint("https://a.example/hook", now=clock(), event_types=["consent.opted_in"])
    other = store.add_endpoint("https://b.example/hook", now=clock())
    assert store.replay_events(now=clock(), since=clock() - 60, endpoint_id=ep.id) == 1
    assert [(d.event_id, d.target) for d in store.deliveries()] == [(e2.id, ep.id)]
    assert store.replay_events(now=clock(), event_ids=[e1.id]) == 1  # ep's filter refuses an opt-out
    assert store.deliveries()[-1].target == other.id
    with pytest.raises(WebhookError):
        store.replay_events(now=clock(), event_ids=[10**9])
    with pytest.raises(WebhookError):
        store.replay_events(now=clock())


def test_remove_cancels_pending_and_rotate_keeps_old_secret_for_grace(kit: Unsubkit, store: HookStore,
                                                                        clock: FrozenClock) -> None:
    ep = store.add_endpoint("https://a.example/hook", now=clock())
    assert ep.secret.startswith("whsec_")
    assert store.endpoints()[0].secret == ep.secret
    rotated = store.rotate_secret(ep.id, now=clock(), grace=3600)
    assert rotated.secret != ep.secret and rotated.previous_secret == ep.secret
    assert rotated.secrets(clock()) == [rotated.secret, ep.secret]
    assert rotated.secrets(clock() + 3601) == [rotated.secret]
    kit.unsubscribe("jane@example.com", "marketing")
    store.fan_out(now=clock())
    assert store.remove_endpoint(ep.id, now=clock()) == 1
    assert store.deliveries()[0].status is DeliveryStatus.CANCELLED
    assert store.endpoints() == []
    with pytest.raises(WebhookError):
        store.endpoint(ep.id)


def test_concurrent_claims_never_overlap(kit: Unsubkit, store: HookStore, clock: FrozenClock) -> None:
    store.add_endpoint("https://a.example/hook", now=clock())
    for i in range(60):
        kit.unsubscribe(f"user{i}@example.com", "marketing")
    store.fan_out(now=clock())
    results: dict[str, list[int]] = {}
    start = threading.Barrier(6)

    def claimer(name: str) -> Callable[[], None]:
        def run() -> None:
            start.wait()
            got: list[int] = []
            while True:
                batch = store.claim(now=clock(), worker=name, lease=60, limit=3)
                if not batch:
                    break
                got += [c.delivery.id for c in batch]
            results[name] = got

        return run

    threads = [threading.Thread(target=claimer(f"w{i}")) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed = [d for ids in results.values() for d in ids]
    assert len(claimed) == 60
    assert len(set(claimed)) == 60, "an attempt was claimed twice"


def test_release_gives_an_untried_claim_back(kit: Unsubkit, store: HookStore, clock: FrozenClock) -> None:
    store.add_endpoint("https://a.example/hook", now=clock())
    kit.unsubscribe("jane@example.com", "marketing")
    store.fan_out(now=clock())
    (c,) = store.claim(now=clock(), worker="A", lease=300, limit=10)
    store.release(c, worker="B")  # not B's: nothing happens
    assert store.claim(now=clock(), worker="B", lease=300, limit=10) == []
    store.release(c, worker="A")
    (again,) = store.claim(now=clock(), worker="B", lease=300, limit=10)
    assert again.attempt == 1
