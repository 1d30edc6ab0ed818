"""Relay throughput: messages/s through ``unsubkit relay`` vs straight to the same sink.

Starts an aiosmtpd sink (its own process, counts what it gets) and a real ``unsubkit relay``
subprocess in front of it (SQLite consent store, RSA-2048 DKIM key, commercial purpose: every
copy gets a token, the two fields, a body link and a signature). The same client drives both
in the same run: C concurrent connections, each sending ~5 kB messages back to back. The
baseline is the sink reached directly; the ratio is relay/direct. Afterwards the sink's count
must equal every message acknowledged.

    .venv/bin/python bench/relay.py [--messages 2000] [--connections 8] [--recipients 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib
from support import free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]

SINK = r"""
import asyncio, signal, sys
from aiosmtpd.smtp import SMTP

class Count:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Count.n += len(envelope.rcpt_tos)
        return "250 2.0.0 Ok"

async def main(port):
    loop = asyncio.get_running_loop()
    handler = Count()
    srv = await loop.create_server(lambda: SMTP(handler, hostname="sink", ident="sink"), "127.0.0.1", port)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    srv.close()
    print(Count.n, flush=True)

asyncio.run(main(int(sys.argv[1])))
"""

PARAGRAPH = (
    "Our spring collection is here: light jackets, linen shirts and the sandals you asked for. "
    "Members get early access this week, and free returns as always.\r\n"
)


def message(n: int, rcpts: list[str]) -> bytes:
    head = (
        f"From: Shop News <news@example.com>\r\nTo: {', '.join(rcpts)}\r\n"
        f"Subject: Spring collection {n}\r\nDate: Thu, 01 Jan 2026 10:00:00 +0000\r\n"
        f"Message-ID: <bench-{n}@example.com>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\nX-Unsubkit-Purpose: marketing\r\n\r\n"
    )
    return (head + PARAGRAPH * 30).encode()


def cli(env: dict[str, str], *args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "unsubkit", *args], env=env, capture_output=True,
                         text=True, check=False)
    if res.returncode:
        raise SystemExit(f"unsubkit {' '.join(args)} failed: {res.stderr}")
    return res.stdout


async def drive(port: int, total: int, connections: int, recipients: int, offset: int) -> float:
    """Seconds to send ``total`` messages over ``connections`` sessions."""
    counter = iter(range(offset, offset + total))

    async def worker() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False,
                                 local_hostname="bench", timeout=120)
        await client.connect()
        try:
            for n in counter:
                rcpts = [f"r{n}-{i}@example.org" for i in range(recipients)]
                errors, _ = await client.sendmail("news@example.com", rcpts, message(n, rcpts))
                if errors:
                    raise SystemExit(f"recipients refused: {errors}")
        finally:
            await client.quit()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--recipients", type=int, default=1)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="unsubkit-bench-relay-") as tmp_name:
        tmp = Path(tmp_name)
        config = tmp / "unsubkit.toml"
        config.write_text(
            f'database_url = "sqlite:///{tmp / "u.db"}"\ndata_dir = "{tmp / "data"}"\n'
            'base_url = "https://unsub.example.com"\nmailto_address = "unsubscribe@example.com"\n'
            'log_level = "warning"\n'
            '[brands.default]\ndkim_keys = ["s1._domainkey.example.com"]\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNSUBKIT_")}
        env["UNSUBKIT_CONFIG"] = str(config)
        cli(env, "init")
        info = json.loads(cli(env, "dkim", "keygen", "--domain", "example.com", "--selector", "s1", "--json"))

        sink_port, relay_port = free_port(), free_port()
        sink = subprocess.Popen([sys.executable, "-c", SINK, str(sink_port)], stdout=subprocess.PIPE)
        relay = subprocess.Popen(
            [sys.executable, "-m", "unsubkit", "relay", "--listen", f"127.0.0.1:{relay_port}",
             "--upstream", f"127.0.0.1:{sink_port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(sink_port, sink)
            wait_port(relay_port, relay)
            n, c, r = args.messages, args.connections, args.recipients
            warm = max(50, n // 20)
            asyncio.run(drive(sink_port, warm, c, r, 0))
            asyncio.run(drive(relay_port, warm, c, r, 10**7))
            direct = asyncio.run(drive(sink_port, n, c, r, 10**8))
            through = asyncio.run(drive(relay_port, n, c, r, 2 * 10**8))
        finally:
            relay.terminate()
            relay.wait(60)
            sink.terminate()
            out, _ = sink.communicate(timeout=60)
        received = int(out.split()[-1])
        expected = 2 * (warm + n) * r
        d_rate, t_rate = n / direct, n / through
        print(f"key: {info['algorithm']} ({info['dns_name']}); {n} messages x {r} recipient(s), "
              f"{c} connections")
        print(f"direct to the sink: {d_rate:8.0f} messages/s ({d_rate * r:.0f} copies/s)")
        print(f"through the relay:  {t_rate:8.0f} messages/s ({t_rate * r:.0f} copies/s)")
        print(f"ratio relay/direct: {t_rate / d_rate:.3f}")
        print(f"sink received {received} copies, expected {expected}: "
              f"{'OK' if received == expected else 'MISMATCH'}")
        if received != expected:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
