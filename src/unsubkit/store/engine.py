"""Engines for SQLite (WAL, fsync on commit) and PostgreSQL, and schema migration (alembic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ..errors import ConfigError, StoreError
from .errors import translate

__all__ = ["READ_ONLY", "make_engine", "migrate", "normalize_url"]

MIGRATIONS = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` use psycopg 3; SQLite URLs pass through."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Python's sqlite3 opens transactions lazily; we issue BEGIN ourselves (see below) so that
    # a write transaction takes the lock at once instead of failing mid-way on upgrade.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: every commit is fsync'd, so a 200 after commit survives power loss.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


#: Execution option marking a connection as read-only: its SQLite transaction is deferred.
READ_ONLY = "unsubkit_read_only"


def _sqlite_begin(conn: Any) -> None:
    # Writers take the lock at BEGIN (no deadlock-prone lock upgrades); readers use a deferred
    # transaction so that, in WAL mode, they never queue behind the writer.
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid database URL: {exc}") from None
    try:
        if parsed.get_backend_name() == "sqlite":
            db = parsed.database
            if db and db != ":memory:":
                Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                parsed, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
            )
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        if parsed.get_backend_name() == "postgresql":
            kwargs.setdefault("pool_size", 10)
            kwargs.setdefault("max_overflow", 20)
            return create_engine(parsed, pool_pre_ping=True, **kwargs)
    except (SQLAlchemyError, ImportError) as exc:
        raise ConfigError(f"cannot use database URL: {exc}") from None
    raise ConfigError(f"unsupported database {parsed.get_backend_name()!r} (use sqlite or postgresql)")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (every head)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
    except SQLAlchemyError as exc:
        raise translate(exc) from exc
    except StoreError:
        raise
