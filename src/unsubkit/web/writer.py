"""Group commit: one writer batches pending opt-outs into one durable transaction.

Each request awaits its own future; the writer resolves it only after the transaction that
holds its event has committed (fsync'd), so a 200 always means "on disk". Under load many
requests share one fsync instead of paying one each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..consent.model import ConsentChange, Event
from ..errors import StoreBusy, StoreError

__all__ = ["GroupCommitWriter", "Recorded", "Writer", "WriterClosed", "commit_requests"]

log = logging.getLogger("unsubkit.writer")


class WriterClosed(StoreError):
    """The writer is shutting down and takes no more work."""


class Recorded(Protocol):
    """What a request learns of its events: the id and whether the state changed."""

    @property
    def id(self) -> int: ...

    @property
    def changed(self) -> bool: ...


class Writer(Protocol):
    """A group-commit writer: :class:`GroupCommitWriter` (a thread of this process) or
    :class:`~unsubkit.web.procwriter.ProcessWriter` (a process of its own)."""

    batches: int
    committed: int

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def submit(self, changes: Sequence[ConsentChange]) -> Sequence[Recorded]: ...


@dataclass(slots=True)
class _Pending:
    changes: Sequence[ConsentChange]
    future: asyncio.Future[list[Event]]


class GroupCommitWriter:
    def __init__(self, record: Callable[[Sequence[ConsentChange]], list[Event]], *, max_batch: int = 256) -> None:
        self._record = record
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0
        self.committed = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="unsubkit-group-commit")

    async def stop(self) -> None:
        """Finish every accepted request, then stop."""
        self._closing = True
        await self._queue.put(None)
        if self._task:
            await self._task

    async def submit(self, changes: Sequence[ConsentChange]) -> list[Event]:
        if self._closing or self._task is None:
            raise WriterClosed("server is shutting down")
        fut: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(changes, fut))
        return await fut

    async def _run(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            size = len(first.changes)
            while size < self._max_batch and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
                size += len(nxt.changes)
            await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        results = await asyncio.to_thread(commit_requests, self._record, [p.changes for p in batch])
        for p, res in zip(batch, results, strict=True):
            if isinstance(res, StoreError):
                if not p.future.done():
                    p.future.set_exception(res)
                continue
            self.committed += len(res)
            if not p.future.done():
                p.future.set_result(res)
        if any(not isinstance(r, StoreError) for r in results):
            self.batches += 1


def commit_requests(
    record: Callable[[Sequence[ConsentChange]], list[Event]], requests: Sequence[Sequence[ConsentChange]]
) -> list[list[Event] | StoreError]:
    """Record several requests' changes in one transaction; each request's events, or its error.

    One bad change must not fail its neighbours: when a batch fails for a reason other than a
    busy store, each request is retried on its own. Foreign exceptions become a
    :class:`StoreError` without their text (it may carry SQL and personal data).
    """
    try:
        events = record([ch for r in requests for ch in r])
    except Exception as exc:
        err = exc if isinstance(exc, StoreError) else None
        if err is None:
            log.exception("unexpected error while recording opt-outs")
            err = StoreError("internal error while recording")
        if len(requests) == 1 or isinstance(err, StoreBusy):
            return [err] * len(requests)
        log.warning("group commit of %d failed (%s); retrying one by one", len(requests), err)
        return [commit_requests(record, [r])[0] for r in requests]
    out: list[list[Event] | StoreError] = []
    i = 0
    for r in requests:
        out.append(events[i : i + len(r)])
        i += len(r)
    return out
