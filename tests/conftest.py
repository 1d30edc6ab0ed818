"""Shared fixtures: isolated settings, a store on SQLite *and* on the machine's PostgreSQL, and a
real ``unsubkit serve`` subprocess on a free loopback port.

PostgreSQL is never skipped: when it is unreachable the tests that need it fail, and say why.
Each PostgreSQL test gets its own schema (dropped afterwards), so tests never see each other.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from unsubkit.clock import FrozenClock
from unsubkit.consent.model import PurposeKind
from unsubkit.keystore import add_key, load_ring
from unsubkit.service import Unsubkit
from unsubkit.settings import Settings
from unsubkit.store import SQLStore

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
PG_URL = os.environ.get("UNSUBKIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer's UNSUBKIT_* variables or ./unsubkit.toml leak into a test."""
    for key in list(os.environ):
        if key.startswith("UNSUBKIT_") and not key.startswith("UNSUBKIT_TEST_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_admin() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at {PG_URL} is unreachable ({exc}); the store tests require it. "
            "Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            pytrace=False,
        )


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose connections live in a fresh, private schema."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with _pg_admin() as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'unsubkit.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(time.time())


@pytest.fixture
def make_settings(tmp_path: Path, db_url: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": db_url,
            "data_dir": tmp_path / "data",
            "base_url": "https://unsub.example.com",
            "mailto_address": "unsubscribe@example.com",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


def build_kit(settings: Settings, clock: Callable[[], float] = time.time) -> Unsubkit:
    if not settings.keys_path.exists():
        add_key(settings.keys_path, clock())
    store = SQLStore(settings.database_url)
    store.migrate()
    store.ensure_purpose("marketing", PurposeKind.COMMERCIAL)
    store.ensure_purpose("transactional", PurposeKind.TRANSACTIONAL)
    return Unsubkit(settings, store=store, ring=load_ring(settings.keys_path), clock=clock)


@pytest.fixture
def kit(settings: Settings, clock: FrozenClock) -> Iterator[Unsubkit]:
    k = build_kit(settings, clock)
    yield k
    k.close()


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    config: Path
    log: Path

    def cli(self, *args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=self.env, check=check, input=input)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def run_cli(
    *args: str, env: dict[str, str], check: bool = True, input: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, "-m", "unsubkit", *args],
        env=env, capture_output=True, text=input is None, input=input, timeout=120,
    )
    if check and res.returncode != 0:
        raise AssertionError(f"unsubkit {' '.join(args)} failed ({res.returncode}): {res.stderr}")
    return res  # type: ignore[return-value]


def cli_env(tmp_path: Path, db_url: str, extra_toml: str = "", **env: str) -> dict[str, str]:
    """Environment for a CLI/server subprocess with its own config file and data dir."""
    config = tmp_path / "unsubkit.toml"
    config.write_text(
        f'database_url = "{db_url}"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        'base_url = "https://unsub.example.com"\n'
        'mailto_address = "unsubscribe@example.com"\n'
        'api_key = "test-api-key"\n'
        + extra_toml
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("UNSUBKIT_") or k.startswith("UNSUBKIT_TEST_")}
    base.update({"UNSUBKIT_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}, **env)
    return base


def start_server(env: dict[str, str], tmp_path: Path, *extra: str, port: int | None = None) -> Server:
    port = port or free_port()
    if not any(a in ("--smtp-port", "--no-smtp") or a.startswith("--smtp-port=") for a in extra):
        # Never the default 2525: parallel or restarted servers would fight over it.
        extra = (*extra, "--smtp-port", str(free_port()))
    log = tmp_path / f"server-{port}.log"
    fh = log.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "unsubkit", "serve", "--host", "127.0.0.1", "--port", str(port), *extra],
        env=env, stdout=fh, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Server(url, proc, env, Path(env["UNSUBKIT_CONFIG"]), log)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"server did not become healthy: {log.read_text()}")


@pytest.fixture
def server_factory(tmp_path: Path, db_url: str) -> Iterator[Callable[..., Server]]:
    """Start real ``unsubkit serve`` subprocesses (after ``unsubkit init``); all stopped at the end."""
    started: list[Server] = []

    def factory(*extra: str, extra_toml: str = "", port: int | None = None, **env: str) -> Server:
        e = cli_env(tmp_path, db_url, extra_toml, **env)
        if not started:
            run_cli("init", env=e)
        srv = start_server(e, tmp_path, *extra, port=port)
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    return server_factory()
