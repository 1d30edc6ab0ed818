"""Durable one-click POSTs against a hello-world POST route on the same server, same run.

The server is the real one (the app ``unsubkit serve`` builds, with its webhook worker), started
by this script in a subprocess on a free loopback port, plus one bench-only route ``POST
/hello`` that reads its body and answers a short text: the same framework, connections and
body handling, minus the opt-out itself. wrk drives 64 connections with a Lua script that gives
every one-click request its own token (a different recipient each time, so every request is a
first opt-out that inserts a contact point, an event, a state row and an outbox row).

Rounds alternate hello / one-click; each side's best round counts (the machine is shared). After
the run, every 200 answered is checked against the events in the database.

Targets on SQLite (WAL, synchronous=FULL): one-click rate >= 0.6x hello, p99 <= 25 ms. PostgreSQL
is measured too (``--postgres URL`` or ``UNSUBKIT_TEST_POSTGRES_URL``) and reported, not judged.

    .venv/bin/python bench/oneclick.py [--duration 8] [--rounds 2] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from support import cpu_seconds, free_port

RATIO_TARGET = 0.6
P99_TARGET_MS = 25.0
CONNECTIONS = 64
BODY = "List-Unsubscribe=One-Click"

LUA = r"""
local tokens = {}
local threads = {}
local counter = 0
statuses = {}
local prefix = os.getenv("BENCH_PREFIX")
local tokens_file = os.getenv("BENCH_TOKENS")

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  if tokens_file ~= nil and tokens_file ~= "" then
    for line in io.lines(tokens_file) do
      table.insert(tokens, line)
    end
  end
end

function request()
  counter = counter + 1
  local path = prefix
  if #tokens > 0 then
    path = prefix .. tokens[counter]
  end
  return wrk.format("POST", path,
    {["Content-Type"] = "application/x-www-form-urlencoded"}, "List-Unsubscribe=One-Click")
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then
      for k, v in pairs(s) do counts[tostring(k)] = (counts[tostring(k)] or 0) + v end
    end
  end
  local parts = {}
  for k, v in pairs(counts) do table.insert(parts, string.format('"%s": %d', k, v)) end
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    table.concat(parts, ", ")))
end
"""


# -- the server (this script re-run with --serve) ---------------------------------------------------


def serve(port: int) -> None:
    import logging

    import uvicorn
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    from unsubkit.hooks import webhook_service
    from unsubkit.service import Unsubkit
    from unsubkit.settings import load_settings
    from unsubkit.web import create_app

    settings = load_settings()
    kit = Unsubkit.open(settings, migrate=True)
    logging.basicConfig(level="WARNING")
    app = create_app(kit, services=[webhook_service])

    async def hello(request: Request) -> Response:
        await request.body()
        return PlainTextResponse("Hello, world\n")

    # Bench-only: the hello route goes first in the very same router and stack.
    app.router.routes.insert(0, Route("/hello", hello, methods=["POST"]))
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning", lifespan="on")


# -- the driver ------------------------------------------------------------------------------------


@dataclass
class Round:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int]
    errors: int
    #: Server process CPU (user + system) per request: steadier than rates on a shared machine.
    cpu_us: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def run_wrk(url: str, prefix: str, duration: float, tokens_file: Path | None, lua: Path, pid: int = 0) -> Round:
    env = {**os.environ, "BENCH_PREFIX": prefix, "BENCH_TOKENS": str(tokens_file or "")}
    cpu0 = cpu_seconds(pid) if pid else 0.0
    cmd = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(duration))}s", "--timeout", "10s", "-s", str(lua), url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 120, check=True).stdout
    m = re.search(r"^BENCH (\{.*\})$", out, re.M)
    if not m:
        raise SystemExit(f"unexpected wrk output:\n{out}")
    d = json.loads(m.group(1))
    cpu = (cpu_seconds(pid) - cpu0) / max(d["requests"], 1) * 1e6 if pid else 0.0
    errors = d["connect_errors"] + d["read_errors"] + d["write_errors"] + d["timeouts"]
    return Round(d["requests"], d["duration_us"] / 1e6, d["p50_us"] / 1e3, d["p99_us"] / 1e3, d["max_us"] / 1e3,
                 d["statuses"], errors, cpu)


def make_tokens(env: dict[str, str], n: int, path: Path) -> None:
    """Seal ``n`` tokens for distinct recipients with the server's own key ring."""
    code = (
        "import sys\n"
        "from unsubkit.service import Unsubkit\n"
        "from unsubkit.settings import load_settings\n"
        "from unsubkit.tokens import Claims\n"
        "kit = Unsubkit.open(load_settings())\n"
        "pid = kit.store.purpose('marketing').id\n"
        "n = int(sys.argv[1])\n"
        "with open(sys.argv[2], 'w') as fh:\n"
        "    for i in range(n):\n"
        "        fh.write(kit.codec.seal(Claims(address=f'bench{i:07d}@example.com', purpose_id=pid,\n"
        "                 message_id=f'<{i:08d}.bench@mail.example.com>')) + '\\n')\n"
        "kit.close()\n"
    )
    subprocess.run([sys.executable, "-c", code, str(n), str(path)], env=env, check=True, timeout=600)


def count_events(env: dict[str, str]) -> int:
    code = (
        "from sqlalchemy import func, select\n"
        "from unsubkit.settings import load_settings\n"
        "from unsubkit.store import SQLStore\n"
        "from unsubkit.store.schema import events\n"
        "s = SQLStore(load_settings().database_url)\n"
        "with s.engine.connect() as c:\n"
        "    print(c.execute(select(func.count()).select_from(events)).scalar_one())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def bench_backend(name: str, db_url: str, workdir: Path, duration: float, rounds: int) -> dict[str, Any]:
    config = workdir / "unsubkit.toml"
    config.write_text(
        f'database_url = "{db_url}"\ndata_dir = "{workdir / "data"}"\n'
        'base_url = "http://127.0.0.1"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNSUBKIT_")}
    env["UNSUBKIT_CONFIG"] = str(config)
    subprocess.run([sys.executable, "-m", "unsubkit", "init"], env=env, check=True, capture_output=True, timeout=120)

    # Each round (and the warm-up) gets its own slice, enough for 12,000 one-clicks a second:
    # well above any hello-world rate seen here (wrk stops with an error if a slice runs out).
    n_tokens = (rounds + 1) * (int(duration * 12000) + 1000)
    tokens = workdir / "tokens.txt"
    make_tokens(env, n_tokens, tokens)
    lua = workdir / "bench.lua"
    lua.write_text(LUA)
    # Each round reads from its own slice of the file: a token is never POSTed twice.
    lines = tokens.read_text().splitlines()
    per_round = len(lines) // (rounds + 1)
    slices = []
    for r in range(rounds + 1):
        p = workdir / f"tokens-{r}.txt"
        p.write_text("\n".join(lines[r * per_round : (r + 1) * per_round]) + "\n")
        slices.append(p)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (workdir / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, __file__, "--serve", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {(workdir / 'server.log').read_text()}")
            time.sleep(0.1)
        # Warm up both paths (imports, caches, connection pool, SQLite page cache).
        run_wrk(url, "/hello", 1, None, lua)
        warm = run_wrk(url, "/u/", 1, slices[0], lua)

        hello: list[Round] = []
        click: list[Round] = []
        for r in range(rounds):
            hello.append(run_wrk(url, "/hello", duration, None, lua, proc.pid))
            click.append(run_wrk(url, "/u/", duration, slices[r + 1], lua, proc.pid))
        text = httpx.get(f"{url}/metrics").text
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    # Every 200 (the warm-up's too) must be an event in the database.
    total_200 = sum(r.statuses.get("200", 0) for r in [*click, warm])
    events = count_events(env)
    best_hello = max(hello, key=lambda r: r.rate)
    best_click = max(click, key=lambda r: r.rate)
    bad = {k: v for r in click for k, v in r.statuses.items() if k != "200"}
    batches = metric(text, "unsubkit_group_commit_batches")
    changes = metric(text, "unsubkit_group_commit_changes")
    return {
        "backend": name,
        "hello_rps": best_hello.rate,
        "oneclick_rps": best_click.rate,
        "ratio": best_click.rate / best_hello.rate,
        "p50_ms": best_click.p50_ms,
        "p99_ms": best_click.p99_ms,
        "hello_p99_ms": best_hello.p99_ms,
        "max_ms": best_click.max_ms,
        "non_200": bad,
        "errors": sum(r.errors for r in click),
        "answered_200": total_200,
        "events_in_db": events,
        "avg_batch": changes / batches if batches else 0.0,
        "hello_cpu_us": min(r.cpu_us for r in hello),
        "oneclick_cpu_us": min(r.cpu_us for r in click),
        "rounds": [(round(h.rate), round(c.rate), round(c.p99_ms, 1)) for h, c in zip(hello, click, strict=True)],
    }


def postgres_url(base: str) -> tuple[str, str]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", schema


def drop_schema(base: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--postgres", default=os.environ.get("UNSUBKIT_TEST_POSTGRES_URL",
                                                          "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.port)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)")
        return 2

    results = []
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory(prefix=f"unsubkit-bench-{backend}-") as tmp:
            if backend == "sqlite":
                results.append(bench_backend("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", Path(tmp),
                                             args.duration, args.rounds))
            elif backend == "postgres":
                url, schema = postgres_url(args.postgres)
                try:
                    results.append(bench_backend("postgres", url, Path(tmp), args.duration, args.rounds))
                finally:
                    drop_schema(args.postgres, schema)
            else:
                raise SystemExit(f"unknown backend {backend!r}")

    print(f"one-click POST vs hello-world POST, {CONNECTIONS} connections, wrk, "
          f"{args.rounds} x {args.duration:g} s rounds (best round per side)")
    print(f"{'backend':<10}{'hello /s':>10}{'1-click /s':>12}{'ratio':>8}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'batch':>8}{'cpu us/req':>16}  rounds (hello, 1-click, p99)")
    failed = []
    for r in results:
        print(f"{r['backend']:<10}{r['hello_rps']:>10,.0f}{r['oneclick_rps']:>12,.0f}{r['ratio']:>7.2f}x"
              f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['avg_batch']:>8.1f}"
              f"{r['hello_cpu_us']:>8.0f} /{r['oneclick_cpu_us']:>6.0f}  {r['rounds']}")
        if r["non_200"] or r["errors"]:
            print(f"  {r['backend']}: non-200 answers {r['non_200']}, socket errors {r['errors']}")
            failed.append(f"{r['backend']} errors")
        if r["events_in_db"] < r["answered_200"]:
            print(f"  {r['backend']}: {r['answered_200']} answered 200 but only {r['events_in_db']} events stored")
            failed.append(f"{r['backend']} durability")
        if r["backend"] == "sqlite":
            if r["ratio"] < RATIO_TARGET:
                failed.append(f"sqlite ratio {r['ratio']:.2f} < {RATIO_TARGET}")
            if r["p99_ms"] > P99_TARGET_MS:
                failed.append(f"sqlite p99 {r['p99_ms']:.1f} ms > {P99_TARGET_MS:g} ms")
    if failed:
        print("FAIL: " + "; ".join(failed))
        return 1
    print(f"OK: sqlite >= {RATIO_TARGET}x hello with p99 <= {P99_TARGET_MS:g} ms; every 200 is in the database")
    return 0


if __name__ == "__main__":
    sys.exit(main())
