"""Send-time filtering: which recipients of a (purpose, topic) may be mailed.

:class:`BlockedIndex` loads, once, every address a send to the purpose/topic must skip (with the
reason, in :func:`~unsubkit.consent.decide`'s precedence); :func:`filter_list` then streams a
list through it chunk by chunk. Memory grows with the number of opt-outs, never with the list.
"""

from __future__ import annotations

import csv
import itertools
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from ..address import normalize
from ..consent.decisions import Decision
from ..consent.model import Purpose, Topic
from ..errors import AddressError
from ..store.base import ConsentStore
from .normalize import all_fast, fast_key
from .reader import Chunk, ListReader

__all__ = ["BlockedIndex", "FilterStats", "RowWriter", "SendCheck", "filter_list"]

_ALLOWED = Decision(True, "allowed")
_TRANSACTIONAL = Decision(True, "transactional")


class RowWriter(Protocol):
    def writerow(self, row: Iterable[Any], /) -> Any: ...


@dataclass(frozen=True, slots=True)
class SendCheck:
    """The decision for one input address. An invalid address has ``normalized=None`` and a
    denied decision whose reason is the validator's message."""

    address: str
    normalized: str | None
    decision: Decision

    def __bool__(self) -> bool:
        return self.decision.allowed


class BlockedIndex:
    """The blocked addresses of one (purpose, topic), with their reasons, loaded once.

    Membership lives in a ``set`` (half the memory and faster probes than a dict); reasons are
    one default (the most common) plus a small dict of exceptions.
    """

    def __init__(self, purpose: Purpose, topic: Topic | None, blocked: Mapping[str, str]) -> None:
        """``blocked``: normalized address -> reason (``decide``'s wording)."""
        counts = Counter(blocked.values())
        default = counts.most_common(1)[0][0] if counts else ""
        self._setup(purpose, topic, set(blocked), default,
                    {a: r for a, r in blocked.items() if r != default})

    def _setup(self, purpose: Purpose, topic: Topic | None, members: set[str], default: str,
               exceptions: dict[str, str]) -> None:
        self.purpose = purpose
        self.topic = topic
        self.members = members if purpose.commercial else set()
        self.default_reason = default
        self.exceptions = exceptions

    @classmethod
    def load(cls, store: ConsentStore, purpose: Purpose, topic: Topic | None) -> BlockedIndex:
        index = cls.__new__(cls)
        # Transactional mail is never blocked by an opt-out: nothing to load.
        if not purpose.commercial:
            index._setup(purpose, topic, set(), "", {})
            return index
        # Reasons arrive in increasing precedence (topic, purpose, bulk email).
        by_reason: dict[str, list[str]] = {}
        for reason, page in store.blocked_addresses(purpose.id, topic.id if topic else None):
            by_reason.setdefault(reason, []).extend(page)
        if not by_reason:
            index._setup(purpose, topic, set(), "", {})
            return index
        order = list(by_reason)
        default = max(order, key=lambda r: len(by_reason[r]))
        members = set(by_reason[default])
        exceptions: dict[str, str] = {}
        for reason in order:
            if reason == default:
                continue
            addresses = by_reason[reason]
            if order.index(reason) > order.index(default):
                exceptions.update(dict.fromkeys(addresses, reason))  # outranks the default
            else:
                exceptions.update((a, reason) for a in addresses if a not in members)
        for reason in order:
            if reason != default:
                members.update(by_reason[reason])
        index._setup(purpose, topic, members, default, exceptions)
        return index

    def __len__(self) -> int:
        return len(self.members)

    def reason(self, normalized: str) -> str | None:
        """Why ``normalized`` is blocked, or ``None`` when it may be sent to."""
        if normalized not in self.members:
            return None
        return self.exceptions.get(normalized, self.default_reason)

    def decide(self, normalized: str) -> Decision:
        if not self.purpose.commercial:
            return _TRANSACTIONAL
        reason = self.reason(normalized)
        return _ALLOWED if reason is None else Decision(False, reason)

    def check(self, address: str) -> SendCheck:
        try:
            key = fast_key(address.strip()) or normalize(address)
        except AddressError as exc:
            return SendCheck(address, None, Decision(False, str(exc)))
        return SendCheck(address, key, self.decide(key))

    def check_many(self, addresses: Iterable[str]) -> Iterator[SendCheck]:
        return map(self.check, addresses)


@dataclass
class FilterStats:
    kept: int = 0
    blocked: int = 0
    invalid: int = 0
    #: Blocked rows by reason.
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.kept + self.blocked + self.invalid

    def summary(self) -> str:
        parts = [f"kept {self.kept}", f"blocked {self.blocked}"]
        if self.reasons:
            parts[-1] += " (" + ", ".join(f"{r}: {n}" for r, n in self.reasons.most_common()) + ")"
        parts.append(f"invalid {self.invalid}")
        return ", ".join(parts)

    def as_json(self) -> dict[str, object]:
        return {"kept": self.kept, "blocked": self.blocked, "invalid": self.invalid,
                "reasons": dict(self.reasons)}


@dataclass(slots=True)
class _Prepared:
    """A chunk with its keys computed (validation and normalization need no opt-outs)."""

    chunk: Chunk
    #: Fast path: one normalized key per row.
    keys: list[str] | None
    #: Slow path: ``(row, key, None)`` or ``(row, None, error)``; blank lines left out.
    rows: list[tuple[int, str | None, str | None]] | None = None


def _prepare(chunk: Chunk) -> _Prepared:
    if chunk.joined is not None:
        # The lines shape: keys come from one lower() of the chunk text; when that changes
        # nothing (an already lowercase list) the values themselves are the keys.
        lowered = chunk.joined.lower()
        if all_fast(chunk.values, lowered):
            return _Prepared(chunk, chunk.values if lowered == chunk.joined else lowered.split("\n"))
    elif all_fast(chunk.values):
        return _Prepared(chunk, list(map(str.lower, chunk.values)))
    rows: list[tuple[int, str | None, str | None]] = []
    for i, value in enumerate(chunk.values):
        stripped = value.strip()
        if not stripped and chunk.joined is not None:
            continue  # a blank line is not a recipient; a CSV row without address is invalid
        key = fast_key(stripped)
        if key is None:
            try:
                key = normalize(stripped)
            except AddressError as exc:
                rows.append((i, None, str(exc)))
                continue
        rows.append((i, key, None))
    return _Prepared(chunk, None, rows)


def filter_list(
    reader: ListReader,
    index: BlockedIndex,
    out: TextIO,
    *,
    blocked_out: TextIO | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> FilterStats:
    """Write the sendable rows of ``reader`` to ``out`` unchanged and in order.

    ``blocked_out`` (optional) receives a CSV ``line,email,reason`` of every other row. Blank
    lines are neither recipients nor errors and are dropped.
    """
    stats = FilterStats()
    if reader.header is not None:
        out.write(reader.header + "\n")
    writer = csv.writer(blocked_out, lineterminator="\n") if blocked_out is not None else None
    if writer is not None:
        writer.writerow(["line", "email", "reason"])
    for chunk in reader.chunks():
        prep = _prepare(chunk)
        if prep.keys is not None:
            kept = _fast_chunk(chunk, prep.keys, index, stats, writer)
        else:
            kept = _slow_chunk(prep, index, stats, writer)
        if kept:
            out.write("\n".join(kept))
            out.write("\n")
        if on_progress is not None:
            on_progress(chunk.size)
    return stats


def _fast_chunk(
    chunk: Chunk, keys: list[str], index: BlockedIndex, stats: FilterStats,
    writer: RowWriter | None,
) -> list[str]:
    members = index.members
    if not members:
        stats.kept += len(keys)
        return chunk.raws
    # Membership only, from C; reasons are looked up for the blocked rows alone.
    if keys is chunk.raws and writer is None and not index.exceptions:
        kept = list(itertools.filterfalse(members.__contains__, keys))
        blocked_keys: Iterable[str] = ()
    else:
        flags = list(map(members.__contains__, keys))
        kept = list(itertools.compress(chunk.raws, map(operator.not_, flags)))
        blocked_keys = itertools.compress(keys, flags)
    n_blocked = len(keys) - len(kept)
    stats.kept += len(kept)
    if n_blocked:
        stats.blocked += n_blocked
        if writer is not None:
            for i, flag in enumerate(flags):
                if flag:
                    reason = index.reason(keys[i])
                    stats.reasons[reason or ""] += 1
                    writer.writerow([chunk.line_no(i), chunk.values[i], reason])
        elif index.exceptions:
            get = index.exceptions.get
            default = index.default_reason
            stats.reasons.update(get(k, default) for k in blocked_keys)
        else:
            stats.reasons[index.default_reason] += n_blocked
    return kept


def _slow_chunk(
    prep: _Prepared, index: BlockedIndex, stats: FilterStats, writer: RowWriter | None,
) -> list[str]:
    chunk = prep.chunk
    kept: list[str] = []
    for i, key, error in prep.rows or ():
        if key is None:
            stats.invalid += 1
            if writer is not None:
                writer.writerow([chunk.line_no(i), chunk.values[i], error])
            continue
        reason = index.reason(key)
        if reason is None:
            stats.kept += 1
            kept.append(chunk.raws[i])
        else:
            stats.blocked += 1
            stats.reasons[reason] += 1
            if writer is not None:
                writer.writerow([chunk.line_no(i), chunk.values[i], reason])
    return kept
