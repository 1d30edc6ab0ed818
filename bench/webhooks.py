"""Webhook delivery throughput: the worker (outbox fan-out, claims with leases, a signed POST,
the result and attempt log committed per delivery) against bare signed POSTs of the same
payloads to the same receiver with the same concurrency, measured in the same run.

    .venv/bin/python bench/webhooks.py [--events 2000] [--concurrency 16] [--postgres URL]

The receiver is a uvicorn subprocess on a loopback port answering 204. Target: the worker's
bookkeeping costs at most half the raw HTTP rate on SQLite (ratio >= 0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from support import free_port

from unsubkit.consent.model import PurposeKind
from unsubkit.hooks import DeliveryStatus, DeliveryWorker, HookStore, hook_store, sign_headers
from unsubkit.keystore import add_key, load_ring
from unsubkit.service import Unsubkit
from unsubkit.settings import Settings, WebhookSettings
from unsubkit.store import SQLStore

TARGET = 0.5
RECEIVER = """
import uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
uvicorn.run(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), log_level="error", access_log=False)
"""


def start_receiver() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    url = f"http://127.0.0.1:{port}/hook"
    for _ in range(100):
        try:
            httpx.post(url, content=b"{}")
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("receiver did not start")


def make_kit(db_url: str, data: Path, concurrency: int) -> Unsubkit:
    settings = Settings(database_url=db_url, data_dir=data,
                        webhooks=WebhookSettings(concurrency=concurrency, timeout=10, lease=60))
    if not settings.keys_path.exists():
        add_key(settings.keys_path, time.time())
    store = SQLStore(db_url)
    store.migrate()
    store.ensure_purpose("marketing", PurposeKind.COMMERCIAL)
    return Unsubkit(settings, store=store, ring=load_ring(settings.keys_path))


async def bare_posts(url: str, bodies: list[str], secret: str, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency), trust_env=False) as client:
        async def one(i: int, body: str) -> None:
            async with sem:
                headers = sign_headers([secret], f"msg_{i}", time.time(), body)
                headers["Content-Type"] = "application/json"
                r = await client.post(url, content=body.encode(), headers=headers)
                assert r.status_code == 204

        start = time.perf_counter()
        await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
        return len(bodies) / (time.perf_counter() - start)


async def worker_rate(kit: Unsubkit, n: int) -> float:
    """The worker as ``serve`` runs it (``run``), from outbox to every result committed."""
    worker = DeliveryWorker.from_kit(kit)
    stop = asyncio.Event()
    async with worker.session():
        start = time.perf_counter()
        task = asyncio.create_task(worker.run(stop))
        while worker.delivered < n:
            await asyncio.sleep(0.005)
        stop.set()
        await task  # records the last outcomes
        elapsed = time.perf_counter() - start
    assert worker.delivered == n and worker.failed == 0, (worker.delivered, worker.failed)
    return n / elapsed


def measure(label: str, db_url: str, url: str, args: argparse.Namespace, tmp: Path) -> None:
    kit = make_kit(db_url, tmp / "data", args.concurrency)
    try:
        store: HookStore = hook_store(kit)
        ep = store.add_endpoint(url, now=time.time())
        start = time.perf_counter()
        for i in range(args.events):
            kit.unsubscribe(f"user{i}@example.com", "marketing")
        record_rate = args.events / (time.perf_counter() - start)
        store.fan_out(now=time.time())
        bodies = [d.payload for d in store.deliveries(limit=args.events)]
        # Leave the fan-out to the worker: put the outbox back as it was.
        with kit.store.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.exec_driver_sql("DELETE FROM webhook_deliveries")
            conn.exec_driver_sql("UPDATE outbox SET processed_at = NULL")
        base = asyncio.run(bare_posts(url, bodies, ep.secret, args.concurrency))
        got = asyncio.run(worker_rate(kit, args.events))
        assert len(store.deliveries(status=DeliveryStatus.DELIVERED, limit=args.events + 1)) == args.events
        ratio = got / base
        print(f"{label}: {args.events} events (recorded at {record_rate:,.0f}/s, one transaction each)")
        print(f"  bare signed POSTs, concurrency {args.concurrency}: {base:,.0f}/s")
        print(f"  worker (fan-out + claim + POST + commit):  {got:,.0f}/s  ratio {ratio:.2f}"
              + (f"  (target >= {TARGET})" if label == "sqlite" else ""))
    finally:
        kit.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test",
                    help="Also measure on this PostgreSQL (in a scratch schema); '' to skip.")
    args = ap.parse_args()
    proc, url = start_receiver()
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            measure("sqlite", f"sqlite:///{tmp / 'bench.db'}", url, args, tmp)
            if args.postgres:
                schema = f"bench_{uuid.uuid4().hex[:8]}"
                try:
                    admin = psycopg.connect(args.postgres, autocommit=True, connect_timeout=5)
                except psycopg.OperationalError as exc:
                    print(f"postgresql: skipped ({exc})")
                    return
                with admin:
                    admin.execute(f'CREATE SCHEMA "{schema}"')
                    try:
                        sep = "&" if "?" in args.postgres else "?"
                        measure("postgresql", f"{args.postgres}{sep}options=-csearch_path%3D{schema}", url, args,
                                tmp)
                    finally:
                        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
