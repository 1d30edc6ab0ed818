"""Send-time filtering speed: ``unsubkit filter`` machinery vs a pure Python set difference.

1,000,000 recipients (one address a line) against 1,000,000 opted-out addresses imported into
the store. The baseline reads the opt-out file into a ``set`` and writes the recipients not in
it; ours loads the blocked set from the database (one aggregate query per 100k rows) and streams
the recipients through validation, normalization and the lookup. Both run on the same files in
the same process, interleaved, best of ``--repeat``; wall-clock and process CPU time are both
printed (CPU time is the steadier one on a shared machine; with SQLite all the work is in this
process). Target: ours <= 2x baseline on SQLite.

    .venv/bin/python bench/filter.py                  # SQLite and PostgreSQL
    .venv/bin/python bench/filter.py --n 200000 --no-postgres

Also prints the import rate (``consent import`` machinery, batches of 5,000 per transaction).
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from unsubkit.clock import system_clock
from unsubkit.consent.model import PurposeKind
from unsubkit.keystore import add_key, load_ring
from unsubkit.lists import ListReader, filter_list, import_optouts
from unsubkit.service import Unsubkit
from unsubkit.settings import Settings
from unsubkit.store import SQLStore

PG_URL = os.environ.get("UNSUBKIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
WORDS = ("news", "jane.doe", "j_smith", "info", "m.rossi", "k-lee", "sales+eu", "anna")
DOMAINS = ("example.com", "mail.example.org", "corp.example.net", "shop.example.co.uk", "example.de")


def address(i: int) -> str:
    return f"{WORDS[i % len(WORDS)]}{i}@{DOMAINS[(i // 7) % len(DOMAINS)]}"


def write_files(d: Path, n: int) -> tuple[Path, Path]:
    optouts, recipients = d / "optouts.txt", d / "recipients.txt"
    with optouts.open("w") as f:
        f.writelines(address(i) + "\n" for i in range(n))
    # Half of the recipients opted out, half never did; interleaved.
    with recipients.open("w") as f:
        f.writelines(address(i // 2 if i % 2 else n + i) + "\n" for i in range(n))
    return optouts, recipients


def baseline(optouts: Path, recipients: Path, out: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of the pure Python set difference."""
    t0, c0 = time.perf_counter(), time.process_time()
    with optouts.open() as f:
        blocked = {line.strip() for line in f}
    with recipients.open() as f, out.open("w") as o:
        o.writelines(line for line in f if line.strip() not in blocked)
    return time.perf_counter() - t0, time.process_time() - c0


def ours(kit: Unsubkit, recipients: Path, out: Path) -> tuple[float, float, float]:
    """What `unsubkit filter` runs: load the opt-outs once, then stream the list.
    Returns (wall, CPU, wall of the load alone)."""
    t0, c0 = time.perf_counter(), time.process_time()
    index = kit.blocked_index("marketing")
    t1 = time.perf_counter()
    with recipients.open(newline="", errors="surrogateescape") as f, \
            out.open("w", newline="", errors="surrogateescape") as o:
        filter_list(ListReader(f), index, o)
    return time.perf_counter() - t0, time.process_time() - c0, t1 - t0


def make_kit(url: str, data: Path) -> Unsubkit:
    settings = Settings(database_url=url, data_dir=data, base_url="https://unsub.example.com")
    if not settings.keys_path.exists():
        add_key(settings.keys_path, system_clock())
    store = SQLStore(url)
    store.migrate()
    store.ensure_purpose("marketing", PurposeKind.COMMERCIAL)
    return Unsubkit(settings, store=store, ring=load_ring(settings.keys_path))


def run(label: str, url: str, d: Path, optouts: Path, recipients: Path, repeat: int, n: int) -> None:
    kit = make_kit(url, d / "data")
    try:
        t0 = time.perf_counter()
        with optouts.open(newline="") as f:
            report = import_optouts(kit, ListReader(f), "marketing", source_name="bench")
        t_import = time.perf_counter() - t0
        assert report.imported == n, report
        t0 = time.perf_counter()
        with optouts.open(newline="") as f:
            again = import_optouts(kit, ListReader(f), "marketing", source_name="bench")
        t_again = time.perf_counter() - t0
        assert again.imported == 0 and again.skipped == n
        base_wall = base_cpu = ours_wall = ours_cpu = load_best = float("inf")
        for _ in range(repeat):
            # Interleaved, best of each: other load on the machine hits both alike.
            gc.collect()
            wall, cpu = baseline(optouts, recipients, d / "base.txt")
            base_wall, base_cpu = min(base_wall, wall), min(base_cpu, cpu)
            gc.collect()
            wall, cpu, load = ours(kit, recipients, d / "ours.txt")
            if wall < ours_wall:
                ours_wall, load_best = wall, load
            ours_cpu = min(ours_cpu, cpu)
        same = (d / "base.txt").read_bytes() == (d / "ours.txt").read_bytes()
        print(f"{label}: import {n:,} opt-outs {t_import:.1f}s ({n / t_import:,.0f}/s), "
              f"re-import (all skipped) {t_again:.1f}s")
        print(f"{label}: wall: baseline set difference {base_wall:.2f}s | unsubkit filter "
              f"{ours_wall:.2f}s (load opt-outs {load_best:.2f}s + stream "
              f"{ours_wall - load_best:.2f}s) | ratio {ours_wall / base_wall:.2f}x")
        print(f"{label}: CPU of this process: baseline {base_cpu:.2f}s | unsubkit filter "
              f"{ours_cpu:.2f}s | ratio {ours_cpu / base_cpu:.2f}x"
              + (" (the PostgreSQL server's own CPU is not in it)" if label == "postgresql" else "")
              + f" | identical output: {same}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNSUBKIT_")}
        cfg = d / "unsubkit.toml"
        cfg.write_text(f'database_url = "{url}"\ndata_dir = "{d / "data"}"\n')
        env["UNSUBKIT_CONFIG"] = str(cfg)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "unsubkit", "filter", "--purpose", "marketing",
                        str(recipients), "-o", str(d / "cli.txt")], env=env, check=True,
                       stderr=subprocess.DEVNULL)
        t_cli = time.perf_counter() - t0
        print(f"{label}: `unsubkit filter` subprocess end to end {t_cli:.2f}s "
              f"(incl. interpreter start), output identical: "
              f"{(d / 'cli.txt').read_bytes() == (d / 'base.txt').read_bytes()}")
    finally:
        kit.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="unsubkit-bench-") as tmp:
        d = Path(tmp)
        optouts, recipients = write_files(d, args.n)
        print(f"{args.n:,} recipients vs {args.n:,} opt-outs; {os.cpu_count()} CPUs; "
              f"python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.1f}")
        if not args.no_sqlite:
            run("sqlite", f"sqlite:///{d / 'bench.db'}", d, optouts, recipients, args.repeat, args.n)
        if not args.no_postgres:
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
            try:
                sep = "&" if "?" in PG_URL else "?"
                url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
                pg_dir = d / "pg"
                pg_dir.mkdir()
                run("postgresql", url, pg_dir, optouts, recipients, args.repeat, args.n)
            finally:
                with psycopg.connect(PG_URL, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    io.DEFAULT_BUFFER_SIZE = max(io.DEFAULT_BUFFER_SIZE, 1 << 16)
    main()
