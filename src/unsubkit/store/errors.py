"""Translate SQLAlchemy / driver exceptions into :mod:`unsubkit.errors`."""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from ..errors import StoreBusy, StoreError

__all__ = ["DB_ERRORS", "translate"]

_BUSY_HINTS = ("database is locked", "database is busy", "connection refused",
               "could not connect", "server closed the connection", "timeout",
               "too many clients", "terminating connection")


#: What :meth:`SQLStore.tx` and friends catch: SQLAlchemy's errors, and sqlite3's own from the
#: statements that go to the driver directly (:mod:`.record`).
DB_ERRORS = (SQLAlchemyError, sqlite3.Error)


def translate(exc: SQLAlchemyError | sqlite3.Error) -> StoreError:
    text = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    hinted = any(h in text.lower() for h in _BUSY_HINTS)
    if isinstance(exc, sqlite3.Error):
        busy = isinstance(exc, sqlite3.OperationalError) and hinted
    else:
        busy = isinstance(exc, OperationalError | DBAPIError) and (exc.connection_invalidated or hinted)
    if busy:
        return StoreBusy(f"database temporarily unavailable: {text}")
    if "no such table" in text or "does not exist" in text:
        return StoreError(f"database schema is missing (run `unsubkit init`): {text}")
    return StoreError(f"database error: {text}")
