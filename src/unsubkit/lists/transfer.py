"""Import existing suppression lists; export the current state or the whole event log.

Imports are idempotent: an address already opted out of the same scope (on the address or its
contact) is skipped, so running an import twice records nothing the second time. Each imported
opt-out is an ordinary event (source ``Import``, mechanism ``import``, reason ``Imported from
NAME``) with its outbox row, written in batches of a few thousand per transaction.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TextIO

from ..address import normalize
from ..clock import to_datetime
from ..consent.model import Event, Mechanism, Scope, Source, event_json
from ..errors import AddressError, ConsentError
from ..settings import DEFAULT_BRAND
from .normalize import all_fast, fast_key
from .reader import ListReader

if TYPE_CHECKING:
    from ..service import Unsubkit

__all__ = [
    "EVENT_FIELDS",
    "STATE_FIELDS",
    "ImportReport",
    "RowError",
    "event_row",
    "export_events",
    "export_state",
    "import_optouts",
]

Format = Literal["csv", "jsonl"]
#: Invalid rows kept in the report (all are counted).
MAX_ERRORS = 1000

STATE_FIELDS = ("email", "level", "contact_id", "scope", "purpose", "purpose_id", "topic",
                "topic_id", "opted_out", "updated_at", "event_id")
EVENT_FIELDS = ("id", "at", "email", "action", "scope", "purpose", "purpose_id", "topic",
                "topic_id", "level", "contact_id", "source", "reason", "mechanism", "brand",
                "message_id", "client_ip", "user_agent", "changed", "suspected_automated",
                "evidence")


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    value: str
    error: str


@dataclass
class ImportReport:
    rows: int = 0
    imported: int = 0
    #: Already opted out of this scope (or repeated within the file).
    skipped: int = 0
    invalid: int = 0
    errors: list[RowError] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows, "imported": self.imported, "skipped": self.skipped,
            "invalid": self.invalid,
            "errors": [{"line": e.line, "value": e.value, "error": e.error} for e in self.errors],
        }


def import_optouts(
    kit: Unsubkit,
    reader: ListReader,
    purpose: str | int,
    topic: str | int | None = None,
    *,
    source_name: str,
    batch: int = 10_000,
    on_progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Opt every valid address of ``reader`` out of (purpose, topic) at channel level."""
    p, t = kit.resolve(purpose, topic)
    if not p.commercial:
        raise ConsentError(f"purpose {p.name!r} is transactional: opt-outs never apply to it")
    name = source_name.strip()
    if not name:
        raise ConsentError("--source needs a name (e.g. sendgrid, mailchimp, ses)")
    scope = Scope.of(p.id, t.id if t else None)
    report = ImportReport()
    pending: list[str] = []

    def flush(addresses: list[str]) -> None:
        added, _ = kit.store.bulk_opt_out(
            addresses, scope, at=kit.clock(), source=Source.IMPORT,
            reason=f"Imported from {name}", mechanism=Mechanism.IMPORT, brand=DEFAULT_BRAND,
        )
        # Skipped: already opted out, or repeated within the batch.
        report.imported += added
        report.skipped += len(addresses) - added

    for chunk in reader.chunks():
        lowered = chunk.joined.lower() if chunk.joined is not None else None
        if all_fast(chunk.values, lowered):
            report.rows += len(chunk.values)
            pending.extend(lowered.split("\n") if lowered is not None
                           else map(str.lower, chunk.values))
        else:
            for i, value in enumerate(chunk.values):
                stripped = value.strip()
                if not stripped and chunk.joined is not None:
                    continue
                report.rows += 1
                key = fast_key(stripped)
                if key is None:
                    try:
                        key = normalize(stripped)
                    except AddressError as exc:
                        report.invalid += 1
                        if len(report.errors) < MAX_ERRORS:
                            report.errors.append(RowError(chunk.line_no(i), value, str(exc)))
                        continue
                pending.append(key)
        while len(pending) >= batch:
            flush(pending[:batch])
            del pending[:batch]
        if on_progress is not None:
            on_progress(chunk.size)
    if pending:
        flush(pending)
    if report.imported >= 10_000:
        kit.store.refresh_statistics()
    return report


# -- export -------------------------------------------------------------------------------


def _iso(ts: float) -> str:
    return to_datetime(ts).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _write(rows: Iterable[dict[str, Any]], fields: tuple[str, ...], out: TextIO, fmt: Format) -> int:
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
            n += 1
    elif fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False))
            out.write("\n")
            n += 1
    else:
        raise ConsentError(f"unknown export format {fmt!r} (use csv or jsonl)")
    return n


def export_state(kit: Unsubkit, out: TextIO, fmt: Format = "csv", *, include_opted_in: bool = False) -> int:
    """The current opt-outs, one row per address and scope (contact-level rows expanded to
    each of the contact's addresses). Re-importable: the address column is ``email``."""
    purposes, topics = kit.store.catalog_names()

    def rows() -> Iterator[dict[str, Any]]:
        for r in kit.store.iter_state(include_opted_in=include_opted_in):
            yield {
                "email": r.address,
                "level": r.level.label,
                "contact_id": r.contact_id,
                "scope": str(r.scope.kind),
                "purpose": purposes.get(r.scope.purpose_id) if r.scope.purpose_id else None,
                "purpose_id": r.scope.purpose_id,
                "topic": topics.get(r.scope.topic_id) if r.scope.topic_id else None,
                "topic_id": r.scope.topic_id,
                "opted_out": r.opted_out,
                "updated_at": _iso(r.updated_at),
                "event_id": r.event_id,
            }

    return _write(rows(), STATE_FIELDS, out, fmt)


def event_row(ev: Event, purposes: dict[int, str], topics: dict[int, str]) -> dict[str, Any]:
    """An export row: :func:`event_json` with ISO time, ``email`` (re-importable) and names."""
    j = event_json(ev)
    j.update(
        at=_iso(ev.at),
        email=ev.address,
        purpose=purposes.get(ev.scope.purpose_id) if ev.scope.purpose_id else None,
        topic=topics.get(ev.scope.topic_id) if ev.scope.topic_id else None,
    )
    return {k: j[k] for k in EVENT_FIELDS}


def export_events(
    kit: Unsubkit, out: TextIO, fmt: Format = "csv", *, since: float | None = None,
    mechanism: Mechanism | None = None,
) -> int:
    """The whole event log (or since a time / for one mechanism), oldest first, streamed."""
    purposes, topics = kit.store.catalog_names()
    rows = (event_row(ev, purposes, topics)
            for ev in kit.store.iter_events(since=since, mechanism=mechanism))
    return _write(rows, EVENT_FIELDS, out, fmt)
