"""Webhooks end to end: real ``unsubkit serve`` / ``unsubkit webhooks work`` processes, a real
receiver on a loopback port that goes down and comes back, ``kill -9`` of a worker during
delivery, and two workers sharing one PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from conftest import Server, build_kit, cli_env, free_port, run_cli
from hooks_support import Receiver
from unsubkit.hooks import DeliveryStatus, HookStore
from unsubkit.settings import Settings
from unsubkit.store import make_engine
from unsubkit.store.schema import webhook_attempts

FAST_TOML = """
[webhooks]
timeout = 2.0
lease = 4.0
backoff_base = 0.2
backoff_factor = 2.0
backoff_max = 1.0
poll_interval = 0.1
concurrency = 4
"""
AUTH = {"Authorization": "Bearer test-api-key"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def hook_store_for(url: str) -> HookStore:
    return HookStore(make_engine(url))


def one_click(server: Server, address: str) -> None:
    r = httpx.post(f"{server.url}/api/v1/headers", json={"to": address, "purpose": "marketing"}, headers=AUTH)
    assert r.status_code == 200, r.text
    path = urlpath(r.json()["url"])
    r = httpx.post(server.url + path, content=b"List-Unsubscribe=One-Click",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200


def urlpath(url: str) -> str:
    return "/u/" + url.rsplit("/u/", 1)[1]


def test_receiver_down_then_up_every_event_delivered(server_factory: Callable[..., Server], receiver: Receiver,
                                                     db_url: str) -> None:
    server = server_factory(extra_toml=FAST_TOML, UNSUBKIT_SMTP_PORT=str(free_port()))
    added = json.loads(server.cli("webhooks", "add", receiver.url, "--event-type", "consent.opted_out",
                                  "--json").stdout)
    secret, ep_id = added["secret"], added["id"]
    assert secret.startswith("whsec_")
    listed = json.loads(server.cli("webhooks", "list", "--json").stdout)
    assert [e["id"] for e in listed] == [ep_id] and "secret" not in listed[0]

    first = [f"early{i}@example.com" for i in range(10)]
    for a in first:
        one_click(server, a)
    receiver.wait_for(lambda r: len({x.json["address"] for x in r}) == 10)

    receiver.stop()
    later = [f"late{i}@example.com" for i in range(10)]
    for a in later:
        one_click(server, a)  # the opt-out never waits for the receiver
    time.sleep(2.5)  # several failed attempts
    store = hook_store_for(db_url)
    pending = store.deliveries(status=DeliveryStatus.PENDING)
    assert len(pending) == 10 and all(d.attempts >= 2 for d in pending)
    assert all("ConnectError" in (d.last_error or "") for d in pending)

    receiver.start()
    got = receiver.wait_for(lambda r: len({x.json["address"] for x in r}) == 20, timeout=30)
    payloads = [r.verify(secret) for r in got]  # every signature checks out with the reference library
    assert {p["address"] for p in payloads} == set(first + later)
    assert all(p["type"] == "consent.opted_out" and p["purpose"] == "marketing" for p in payloads)
    # No duplicates by event id beyond retries: an event seen twice must have been retried.
    deadline = time.monotonic() + 30
    while store.deliveries(status=DeliveryStatus.PENDING) and time.monotonic() < deadline:
        time.sleep(0.2)
    seen = Counter(r.json["event_id"] for r in receiver.received())
    for d in store.deliveries():
        assert d.status is DeliveryStatus.DELIVERED
        assert seen[d.event_id] <= d.attempts
    assert len(seen) == 20
    store.engine.dispose()


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "unsubkit", "webhooks", "work"], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def prepare(tmp_path: Path, url: str, receiver_url: str, events: int) -> tuple[dict[str, str], str, list[str]]:
    """Config + init for worker subprocesses; endpoint and events created in-process."""
    env = cli_env(tmp_path, url, FAST_TOML)
    run_cli("init", env=env)
    kit = build_kit(Settings(database_url=url, data_dir=tmp_path / "data", base_url="https://unsub.example.com"))
    try:
        secret = HookStore(kit.store.engine).add_endpoint(receiver_url, now=time.time()).secret  # type: ignore[attr-defined]
    finally:
        kit.close()
    return env, secret, record_events(tmp_path, url, events)


def record_events(tmp_path: Path, url: str, events: int, prefix: str = "user") -> list[str]:
    kit = build_kit(Settings(database_url=url, data_dir=tmp_path / "data", base_url="https://unsub.example.com"))
    try:
        addresses = [f"{prefix}{i}@example.com" for i in range(events)]
        for a in addresses:
            kit.unsubscribe(a, "marketing")
    finally:
        kit.close()
    return addresses


def test_kill_9_during_delivery_loses_nothing(tmp_path: Path, db_url: str, receiver: Receiver) -> None:
    env, secret, addresses = prepare(tmp_path, db_url, receiver.url, 40)
    receiver.delay = 0.3  # keep deliveries in flight
    first = start_worker(env, tmp_path / "worker1.log")
    try:
        receiver.wait_for(lambda r: len(r) >= 6, timeout=30)
        first.kill()  # SIGKILL: no cleanup, claims stay leased
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    before = len(receiver.received())
    assert before < 40, "the worker finished before it could be killed"
    store = hook_store_for(db_url)
    second = start_worker(env, tmp_path / "worker2.log")
    try:
        receiver.wait_for(lambda r: {x.json["address"] for x in r} == set(addresses), timeout=60)
        # The killed worker's claims are retried once their lease (4 s) runs out.
        deadline = time.monotonic() + 30
        while store.deliveries(status=DeliveryStatus.PENDING) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        second.terminate()
        second.wait(15)
    assert {d.status for d in store.deliveries()} == {DeliveryStatus.DELIVERED}
    got = receiver.received()
    for r in got:
        r.verify(secret)
    seen = Counter(r.json["event_id"] for r in got)
    assert len(seen) == 40
    # At least once: only what was in flight at the kill (at most `concurrency`) came twice.
    assert sum(n - 1 for n in seen.values()) <= 4
    store.engine.dispose()


def test_two_workers_on_postgres_never_deliver_one_attempt_twice(tmp_path: Path, pg_url: str,
                                                                  receiver: Receiver) -> None:
    env, secret, _ = prepare(tmp_path, pg_url, receiver.url, 0)
    receiver.delay = 0.02
    workers = [start_worker(env, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        time.sleep(3)  # both workers up and polling before the events arrive
        assert all(w.poll() is None for w in workers)
        addresses = record_events(tmp_path, pg_url, 300)
        receiver.wait_for(lambda r: len(r) >= 300, timeout=90)
        time.sleep(1.0)  # anything extra would show up now
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(15)
    got = receiver.received()
    ids = Counter(r.headers["webhook-id"] for r in got)
    assert len(got) == 300 and len(ids) == 300, f"duplicates: {[k for k, n in ids.items() if n > 1][:5]}"
    assert {r.verify(secret)["address"] for r in got} == set(addresses)
    store = hook_store_for(pg_url)
    deliveries = store.deliveries()
    assert all(d.status is DeliveryStatus.DELIVERED and d.attempts == 1 for d in deliveries)
    with store.engine.connect() as conn:
        by_worker = Counter(w for (w,) in conn.execute(select(webhook_attempts.c.worker)))
    assert len(by_worker) == 2, f"both workers should have delivered: {by_worker}"
    assert sum(by_worker.values()) == 300
    store.engine.dispose()


def test_admin_api_and_cli_manage_endpoints(server_factory: Callable[..., Server], receiver: Receiver,
                                            db_url: str) -> None:
    server = server_factory(extra_toml=FAST_TOML, UNSUBKIT_SMTP_PORT=str(free_port()))
    api = f"{server.url}/api/v1/webhooks"
    assert httpx.get(api).status_code == 401
    r = httpx.post(api, json={"url": receiver.url, "brands": ["default"], "event_types": ["consent.opted_in"]},
                   headers=AUTH)
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    ep = r.json()
    assert ep["secret"].startswith("whsec_") and ep["brands"] == ["default"]
    for bad in ({"url": "ftp://x"}, {"url": receiver.url, "brands": ["nope"]},
                {"url": receiver.url, "purposes": ["nope"]}, {"url": receiver.url, "event_types": ["x"]}, {}):
        assert httpx.post(api, json=bad, headers=AUTH).status_code == 400, bad
    listed = httpx.get(api, headers=AUTH).json()["webhooks"]
    assert [e["id"] for e in listed] == [ep["id"]] and "secret" not in listed[0]

    rotated = httpx.post(f"{api}/{ep['id']}/rotate-secret", json={"grace_seconds": 600}, headers=AUTH).json()
    assert rotated["secret"] != ep["secret"]
    # `webhooks test` signs with both secrets during the grace time.
    out = json.loads(server.cli("webhooks", "test", ep["id"], "--json").stdout)
    assert out["ok"] and out["status"] == 200
    (req,) = receiver.received()
    assert req.json["type"] == "webhook.test"
    req.verify(ep["secret"])
    req.verify(rotated["secret"])

    # The filter: an opt-in is delivered, an opt-out is not; replay re-sends with the same webhook-id.
    r = httpx.post(f"{server.url}/api/v1/resubscribe", json={"address": "jane@example.com", "purpose": "marketing"},
                   headers=AUTH)
    event_id = r.json()["id"]
    one_click(server, "joe@example.com")
    got = receiver.wait_for(lambda r: len(r) == 2)
    assert got[1].verify(rotated["secret"])["event_id"] == event_id
    out = json.loads(server.cli("webhooks", "replay", "--event", str(event_id), "--json").stdout)
    assert out == {"queued": 1}
    got = receiver.wait_for(lambda r: len(r) == 3)
    assert got[2].headers["webhook-id"] == got[1].headers["webhook-id"]
    assert json.loads(server.cli("webhooks", "dead", "--json").stdout) == []
    bad = server.cli("webhooks", "replay", check=False)
    assert bad.returncode != 0 and "--since" in bad.stderr
    bad = server.cli("webhooks", "replay", "--since", "yesterday-ish", check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr

    assert httpx.delete(f"{api}/{ep['id']}", headers=AUTH).json()["removed"] is True
    assert httpx.delete(f"{api}/{ep['id']}", headers=AUTH).status_code == 404
    gone = server.cli("webhooks", "test", ep["id"], check=False)
    assert gone.returncode == 1 and "no webhook endpoint" in gone.stderr
