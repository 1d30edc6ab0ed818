"""Translate SQLAlchemy / driver exceptions into :mod:`unsubkit.errors`."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from ..errors import StoreBusy, StoreError

__all__ = ["translate"]

_BUSY_HINTS = ("database is locked", "database is busy", "connection refused",
               "could not connect", "server closed the connection", "timeout",
               "too many clients", "terminating connection")


def translate(exc: SQLAlchemyError) -> StoreError:
    text = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    if isinstance(exc, OperationalError | DBAPIError) and (
        exc.connection_invalidated or any(h in text.lower() for h in _BUSY_HINTS)
    ):
        return StoreBusy(f"database temporarily unavailable: {text}")
    if "no such table" in text or "does not exist" in text:
        return StoreError(f"database schema is missing (run `unsubkit init`): {text}")
    return StoreError(f"database error: {text}")
