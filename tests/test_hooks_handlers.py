"""Custom handlers: loading (module:function, entry points), running through the outbox, and a
brand's handler replacing the default opt-out."""

from __future__ import annotations

import asyncio
import importlib
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from conftest import build_kit
from unsubkit.clock import FrozenClock
from unsubkit.consent.model import Mechanism
from unsubkit.errors import WebhookError
from unsubkit.hooks import DeliveryStatus, DeliveryWorker, hook_store, load_handler
from unsubkit.service import Unsubkit
from unsubkit.settings import Brand, Settings, WebhookSettings

FAST = WebhookSettings(timeout=0.5, lease=5.0, backoff_base=1.0, backoff_factor=2.0, backoff_max=5.0,
                       max_age=600.0, poll_interval=0.05)

HANDLERS = """
    import asyncio
    CALLS = []
    FAIL_FIRST = {"n": 0}

    def on_event(payload):
        CALLS.append(("sync", payload))

    async def on_event_async(payload):
        CALLS.append(("async", payload))

    def flaky(payload):
        FAIL_FIRST["n"] += 1
        if FAIL_FIRST["n"] == 1:
            raise RuntimeError("CRM is down")
        CALLS.append(("flaky", payload))

    async def slow(payload):
        await asyncio.sleep(5)

    class Nested:
        @staticmethod
        def method(payload):
            CALLS.append(("nested", payload))

    NOT_CALLABLE = 3
"""


@pytest.fixture
def handlers_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    name = f"crm_hooks_{uuid.uuid4().hex[:8]}"
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{name}.py").write_text(textwrap.dedent(HANDLERS))
    dist = site / "crmplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: crmplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[unsubkit.handlers]\ncrm-{name} = {name}:on_event\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return importlib.import_module(name)


def run(worker: DeliveryWorker, rounds: int = 1) -> int:
    async def go() -> int:
        async with worker.session():
            return sum([await worker.run_once() for _ in range(rounds)])

    return asyncio.run(go())


def test_load_by_module_function_and_entry_point(handlers_module: ModuleType) -> None:
    name = handlers_module.__name__
    assert load_handler(f"{name}:on_event") is handlers_module.on_event
    assert load_handler(f"{name}:Nested.method") is handlers_module.Nested.method
    assert load_handler(f"crm-{name}") is handlers_module.on_event
    for bad in (f"{name}:missing", "no_such_module_xyz:fn", "no-such-entry-point", f"{name}:NOT_CALLABLE", " "):
        with pytest.raises(WebhookError):
            load_handler(bad)


def make_kit(make_settings: Callable[..., Settings], clock: FrozenClock, **overrides: object) -> Unsubkit:
    return build_kit(make_settings(webhooks=FAST, **overrides), clock)


def test_handlers_run_after_commit_through_the_outbox(handlers_module: ModuleType,
                                                      make_settings: Callable[..., Settings],
                                                      clock: FrozenClock) -> None:
    name = handlers_module.__name__
    kit = make_kit(make_settings, clock, handlers=[f"{name}:on_event", f"{name}:on_event_async", f"crm-{name}"])
    try:
        ev = kit.unsubscribe("jane@example.com", "marketing")
        assert handlers_module.CALLS == []  # nothing runs inside the recording transaction
        assert run(DeliveryWorker.from_kit(kit)) == 3
        kinds = sorted(k for k, _ in handlers_module.CALLS)
        assert kinds == ["async", "sync", "sync"]
        payload = handlers_module.CALLS[0][1]
        assert payload["event_id"] == ev.id and payload["address"] == "jane@example.com"
        assert payload["webhook_id"].startswith(f"msg_{ev.id}_")
        assert {d.status for d in hook_store(kit).deliveries()} == {DeliveryStatus.DELIVERED}
    finally:
        kit.close()


def test_a_failing_handler_is_retried_and_never_blocks_the_opt_out(handlers_module: ModuleType,
                                                                    make_settings: Callable[..., Settings],
                                                                    clock: FrozenClock) -> None:
    name = handlers_module.__name__
    kit = make_kit(make_settings, clock, handlers=[f"{name}:flaky", f"{name}:slow", "no_such_module_xyz:fn"])
    try:
        kit.unsubscribe("jane@example.com", "marketing")
        assert not kit.can_send("jane@example.com", "marketing").allowed
        run(DeliveryWorker.from_kit(kit))
        store = hook_store(kit)
        errors = {d.target.split(":")[-1]: d.last_error or "" for d in store.deliveries()}
        assert "CRM is down" in errors["flaky"]
        assert "timed out" in errors["slow"]
        assert "cannot import" in errors["fn"]
        clock.advance(1.0)
        run(DeliveryWorker.from_kit(kit))
        assert [k for k, _ in handlers_module.CALLS] == ["flaky"]
        flaky = next(d for d in store.deliveries() if d.target.endswith(":flaky"))
        assert flaky.status is DeliveryStatus.DELIVERED and flaky.attempts == 2
    finally:
        kit.close()


def test_replacement_handler_records_the_event_but_not_the_state(handlers_module: ModuleType,
                                                                 make_settings: Callable[..., Settings],
                                                                 clock: FrozenClock) -> None:
    name = handlers_module.__name__
    spec = f"{name}:on_event"
    kit = make_kit(make_settings, clock, brands={"acme": Brand(replace_default_with=spec)})
    try:
        claims = kit.open_token(kit.headers_for("jane@example.com", "marketing", brand="acme").token or "")
        events = kit.record(kit.changes_for_token(claims, mechanism=Mechanism.ONE_CLICK))
        assert len(events) == 1 and events[0].changed is False
        # The default action did not happen: unsubkit still allows sending ...
        assert kit.can_send("jane@example.com", "marketing").allowed
        # ... but the event is on record, and the handler got it (not listed in settings.handlers).
        assert [e.id for e in kit.status("jane@example.com").events] == [events[0].id]
        assert run(DeliveryWorker.from_kit(kit)) == 1
        ((kind, payload),) = handlers_module.CALLS
        assert kind == "sync"
        assert payload["default_action"] == "replaced" and payload["handler"] == spec
        assert payload["brand"] == "acme" and payload["mechanism"] == "one-click"
        # Another brand keeps the default.
        claims = kit.open_token(kit.headers_for("joe@example.com", "marketing").token or "")
        kit.record(kit.changes_for_token(claims, mechanism=Mechanism.ONE_CLICK))
        assert not kit.can_send("joe@example.com", "marketing").allowed
    finally:
        kit.close()
