"""The store interface every backend implements (SQLite and PostgreSQL share one SQL class)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from ..consent.contacts import Contact, ContactRef
from ..consent.decisions import ConsentState
from ..consent.model import ConsentChange, Event, Mechanism, Purpose, PurposeKind, Scope, Topic
from .bulk import StateRow

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

    # consent in depth (contacts, history, bulk; see store/contacts.py and store/bulk.py) --
    def catalog_names(self) -> tuple[dict[int, str], dict[int, str]]: ...

    def point_info(self, address: str) -> tuple[int, int | None] | None: ...

    def contact_of(self, address: str) -> int | None: ...

    def history_events(self, address: str) -> tuple[int | None, int | None, list[Event]]: ...

    def add_contact(
        self, external_id: str | None = None, addresses: Iterable[str] = (), *, at: float,
        source: str, mechanism: Mechanism,
    ) -> Contact: ...

    def find_contact(self, ref: ContactRef, *, include_deleted: bool = True) -> Contact: ...

    def link_address(
        self, ref: ContactRef, address: str, *, move: bool = False, at: float, source: str,
        mechanism: Mechanism,
    ) -> tuple[Contact, list[Event]]: ...

    def unlink_address(
        self, address: str, *, at: float, source: str, mechanism: Mechanism
    ) -> tuple[int, list[Event]]: ...

    def delete_contact(
        self, ref: ContactRef, *, at: float, source: str, mechanism: Mechanism
    ) -> tuple[Contact, list[Event]]: ...

    def contact_opt_outs(self, contact_id: int) -> list[Scope]: ...

    def list_contacts(self, *, include_deleted: bool = False, limit: int | None = None) -> list[Contact]: ...

    def blocked_addresses(self, purpose_id: int, topic_id: int | None) -> Iterator[tuple[str, list[str]]]: ...

    def bulk_opt_out(
        self, addresses: Sequence[str], scope: Scope, *, at: float, source: str, reason: str,
        mechanism: Mechanism, brand: str,
    ) -> tuple[int, int]: ...

    def refresh_statistics(self) -> None: ...

    def iter_state(self, *, include_opted_in: bool = False) -> Iterator[StateRow]: ...

    def iter_events(
        self, *, since: float | None = None, until: float | None = None,
        mechanism: Mechanism | None = None, address: str | None = None,
        suspected: bool | None = None, limit: int | None = None,
    ) -> Iterator[Event]: ...
