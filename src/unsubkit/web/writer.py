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

from ..consent.model import ConsentChange, Event
from ..errors import StoreBusy, StoreError

__all__ = ["GroupCommitWriter", "WriterClosed"]

log = logging.getLogger("unsubkit.writer")


class WriterClosed(StoreError):
    """The writer is shutting down and takes no more work."""


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
        flat = [ch for p in batch for ch in p.changes]
        try:
            events = await asyncio.to_thread(self._record, flat)
        except Exception as exc:
            if not isinstance(exc, StoreError):
                log.exception("unexpected error while recording opt-outs")
                exc = StoreError("internal error while recording")
            if len(batch) == 1 or isinstance(exc, StoreBusy):
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                return
            # One bad change must not fail its neighbours: retry each request on its own.
            log.warning("group commit of %d failed (%s); retrying one by one", len(batch), exc)
            for p in batch:
                await self._commit([p])
            return
        self.batches += 1
        self.committed += len(flat)
        i = 0
        for p in batch:
            n = len(p.changes)
            if not p.future.done():
                p.future.set_result(events[i : i + n])
            i += n
