"""The store interface every backend implements (SQLite and PostgreSQL share one SQL class)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..consent.decisions import ConsentState
from ..consent.model import ConsentChange, Event, Purpose, PurposeKind, Topic

__all__ = ["ConsentStore"]


class ConsentStore(Protocol):
    def migrate(self) -> None: ...

    def close(self) -> None: ...

    # catalog ------------------------------------------------------------------------------
    def add_purpose(
        self, name: str, kind: PurposeKind, description: str = "", *, at: float = 0.0
    ) -> Purpose: ...

    def ensure_purpose(self, name: str, kind: PurposeKind, description: str = "") -> Purpose: ...

    def purposes(self) -> list[Purpose]: ...

    def purpose(self, name_or_id: str | int) -> Purpose: ...

    def find_purpose(self, purpose_id: int) -> Purpose | None: ...

    def add_topic(
        self, purpose_id: int, name: str, description: str = "", *, at: float = 0.0
    ) -> Topic: ...

    def topics(self, purpose_id: int | None = None) -> list[Topic]: ...

    def topic(self, purpose_id: int, name_or_id: str | int) -> Topic: ...

    def find_topic(self, topic_id: int) -> Topic | None: ...

    # consent ------------------------------------------------------------------------------
    def record(self, changes: Sequence[ConsentChange], at: float) -> list[Event]:
        """Apply ``changes`` in one durable transaction (with their outbox rows)."""
        ...

    def state(self, address: str) -> ConsentState: ...

    def events(self, address: str) -> list[Event]: ...
