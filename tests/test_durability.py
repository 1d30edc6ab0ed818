"""A 200 means "on disk": ``kill -9`` the server mid-burst; every request that got 200 survives.

Runs on SQLite (WAL, synchronous=FULL) and PostgreSQL through the ``db_url`` fixture.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import Server
from unsubkit.keystore import load_ring
from unsubkit.tokens import Claims, TokenCodec

AUTH = {"Authorization": "Bearer test-api-key"}
REQUESTS = 2000
CONNECTIONS = 128
#: Kill once this many requests were answered 200: the rest are queued, in flight, or committing.
KILL_AFTER = 400


async def burst(server: Server, tokens: list[str], kill: Callable[[], None] | None = None,
                statuses: dict[int, int] | None = None) -> tuple[set[int], int]:
    """POST every token concurrently; SIGKILL the server (or ``kill()`` something else) part-way.
    Returns (indexes that got 200, errors); ``statuses`` counts the other answers."""
    ok: set[int] = set()
    errors = 0
    enough = asyncio.Event()
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    sem = asyncio.Semaphore(CONNECTIONS)

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal errors
        async with sem:
            try:
                r = await client.post(
                    f"/u/{tokens[i]}",
                    content=b"List-Unsubscribe=One-Click",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
            except httpx.HTTPError:
                errors += 1
                return
        if r.status_code == 200:
            ok.add(i)
            if len(ok) >= KILL_AFTER:
                enough.set()
        else:
            errors += 1
            if statuses is not None:
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                assert r.status_code != 503 or r.headers.get("retry-after"), "a 503 says when to retry"

    async def killer() -> None:
        try:
            await asyncio.wait_for(enough.wait(), timeout=30)
        finally:
            (kill or server.proc.kill)()  # SIGKILL: no shutdown hooks, no flush

    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=20) as client:
        kill_task = asyncio.create_task(killer())
        await asyncio.gather(*(one(client, i) for i in range(REQUESTS)))
        await kill_task
    if kill is None:
        server.proc.wait(10)
    return ok, errors


def writer_pid(server: Server) -> int:
    """The server's writer process (``python -m unsubkit.web.procwriter``)."""
    for task in Path(f"/proc/{server.proc.pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"unsubkit.web.procwriter" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    raise AssertionError("no writer process under the server")


async def opted_out(server: Server, addresses: list[str]) -> dict[str, bool]:
    sem = asyncio.Semaphore(32)
    result: dict[str, bool] = {}

    async def one(client: httpx.AsyncClient, address: str) -> None:
        async with sem:
            r = await client.get(
                "/api/v1/can-send", params={"address": address, "purpose": "marketing"}, headers=AUTH
            )
        assert r.status_code == 200, r.text
        result[address] = not r.json()["allowed"]

    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        await asyncio.gather(*(one(client, a) for a in addresses))
    return result


def recipients(server: Server, prefix: str) -> tuple[list[str], list[str]]:
    """``REQUESTS`` addresses and a marketing token for each, sealed with the server's keys."""
    purposes = json.loads(server.cli("purposes", "list", "--json").stdout)
    pid = next(p["id"] for p in purposes if p["name"] == "marketing")
    codec = TokenCodec(load_ring(server.config.parent / "data" / "keys.json"))
    addresses = [f"{prefix}{i}@example.com" for i in range(REQUESTS)]
    return addresses, [codec.seal(Claims(address=a, purpose_id=pid)) for a in addresses]


@pytest.mark.slow
def test_kill_9_mid_burst_loses_no_acknowledged_opt_out(server_factory: Callable[..., Server]) -> None:
    started = time.monotonic()
    server = server_factory()
    addresses, tokens = recipients(server, "durable")

    ok, errors = asyncio.run(burst(server, tokens))
    assert server.proc.returncode == -9
    assert len(ok) >= KILL_AFTER
    assert errors > 0, "the server was killed only after every request finished; nothing was in flight"

    restarted = server_factory()
    state = asyncio.run(opted_out(restarted, addresses))
    lost = [addresses[i] for i in sorted(ok) if not state[addresses[i]]]
    assert not lost, f"{len(lost)} acknowledged opt-outs lost, e.g. {lost[:5]}"
    # Requests that never got an answer may or may not have committed; nothing else is opted out.
    assert sum(state.values()) >= len(ok)
    assert time.monotonic() - started < 90


@pytest.mark.slow
def test_kill_9_of_the_writer_process_loses_nothing_and_the_server_recovers(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory()
    addresses, tokens = recipients(server, "writer")
    first = writer_pid(server)
    statuses: dict[int, int] = {}

    ok, _ = asyncio.run(burst(server, tokens, kill=lambda: os.kill(first, signal.SIGKILL), statuses=statuses))
    assert len(ok) >= KILL_AFTER
    assert set(statuses) <= {503}, statuses  # in flight when the writer died: retryable, not lost
    assert server.proc.poll() is None  # the server itself went on
    state = asyncio.run(opted_out(server, addresses))
    lost = [addresses[i] for i in sorted(ok) if not state[addresses[i]]]
    assert not lost, f"{len(lost)} acknowledged opt-outs lost, e.g. {lost[:5]}"
    # A new writer took over: the requests that got 503 succeed when retried.
    retry = [i for i in range(REQUESTS) if i not in ok][:50]
    with httpx.Client(base_url=server.url, timeout=20) as client:
        answers = [client.post(f"/u/{tokens[i]}", content=b"List-Unsubscribe=One-Click",
                               headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code
                   for i in retry]
    assert answers == [200] * len(retry)
    assert writer_pid(server) != first
    assert "unsubkit_writer_process_restarts 1.0" in httpx.get(f"{server.url}/metrics").text
