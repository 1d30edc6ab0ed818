"""The consent store: SQL schema, migrations, and one implementation for SQLite and PostgreSQL."""

from .base import ConsentStore
from .engine import make_engine, migrate, normalize_url
from .sql import SQLStore

__all__ = ["ConsentStore", "SQLStore", "make_engine", "migrate", "normalize_url"]
