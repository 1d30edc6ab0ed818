"""Group commit: one writer batches concurrent opt-outs into few transactions; failures stay local."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from unsubkit.consent.model import Action, ConsentChange, Event, Mechanism, Scope, Source
from unsubkit.errors import StoreBusy, StoreError
from unsubkit.service import Unsubkit
from unsubkit.web.writer import GroupCommitWriter, WriterClosed


def change(address: str, purpose_id: int = 1) -> ConsentChange:
    return ConsentChange(
        address=address,
        scope=Scope.purpose(purpose_id),
        action=Action.OPT_OUT,
        source=Source.LIST_UNSUBSCRIBE,
        reason="test",
        mechanism=Mechanism.ONE_CLICK,
    )


class Recorder:
    """A record function standing in for the store: logs each transaction, can be slowed or fail."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.transactions: list[list[str]] = []
        self.fail_on: set[str] = set()
        self.busy = False
        self.crash = False
        self.lock = threading.Lock()
        self.next_id = 0

    def __call__(self, changes: Sequence[ConsentChange]) -> list[Event]:
        time.sleep(self.delay)
        if self.busy:
            raise StoreBusy("database is locked")
        if self.crash:
            raise RuntimeError("driver exploded")
        if any(ch.address in self.fail_on for ch in changes):
            raise StoreError("constraint failed")
        with self.lock:
            self.transactions.append([ch.address for ch in changes])
            out = []
            for ch in changes:
                self.next_id += 1
                out.append(Event(self.next_id, ch.address, ch.scope, ch.action, ch.source, ch.reason,
                                 ch.mechanism, ch.brand, ch.message_id, 0.0))
            return out


async def run_writer(rec: Recorder, submissions: list[list[ConsentChange]], **kw: int) -> list[object]:
    writer = GroupCommitWriter(rec, **kw)
    await writer.start()
    try:
        return await asyncio.gather(*(writer.submit(s) for s in submissions), return_exceptions=True)
    finally:
        await writer.stop()


def test_concurrent_submissions_share_transactions() -> None:
    rec = Recorder(delay=0.02)
    subs = [[change(f"u{i}@example.com")] for i in range(200)]
    results = asyncio.run(run_writer(rec, subs))
    assert len(rec.transactions) < 20  # 200 requests, a handful of commits
    assert sum(len(t) for t in rec.transactions) == 200
    # Every request gets exactly its own events back.
    for i, res in enumerate(results):
        assert isinstance(res, list) and [e.address for e in res] == [f"u{i}@example.com"]  # type: ignore[attr-defined]


def test_multi_change_submissions_are_sliced_correctly() -> None:
    rec = Recorder(delay=0.01)
    subs = [[change(f"a{i}@example.com"), change(f"b{i}@example.com", 2)] for i in range(50)]
    results = asyncio.run(run_writer(rec, subs))
    for i, res in enumerate(results):
        assert isinstance(res, list)
        assert [(e.address, e.scope.purpose_id) for e in res] == [(f"a{i}@example.com", 1), (f"b{i}@example.com", 2)]
    for t in rec.transactions:  # a request's changes never straddle two transactions
        for i in range(50):
            assert (f"a{i}@example.com" in t) == (f"b{i}@example.com" in t)


def test_max_batch_is_respected() -> None:
    rec = Recorder(delay=0.01)
    subs = [[change(f"u{i}@example.com")] for i in range(100)]
    asyncio.run(run_writer(rec, subs, max_batch=8))
    assert max(len(t) for t in rec.transactions) <= 8
    assert sum(len(t) for t in rec.transactions) == 100


def test_a_failing_change_does_not_fail_its_neighbours() -> None:
    rec = Recorder(delay=0.01)
    rec.fail_on = {"bad@example.com"}
    subs = [[change(f"u{i}@example.com")] for i in range(30)]
    subs.insert(15, [change("bad@example.com")])
    results = asyncio.run(run_writer(rec, subs))
    bad = results[15]
    assert isinstance(bad, StoreError) and "constraint" in str(bad)
    good = [r for i, r in enumerate(results) if i != 15]
    assert all(isinstance(r, list) and len(r) == 1 for r in good)
    recorded = [a for t in rec.transactions for a in t]
    assert sorted(recorded) == sorted(f"u{i}@example.com" for i in range(30))


def test_busy_store_fails_the_batch_for_retry() -> None:
    rec = Recorder()
    rec.busy = True
    results = asyncio.run(run_writer(rec, [[change(f"u{i}@example.com")] for i in range(5)]))
    assert all(isinstance(r, StoreBusy) for r in results)


def test_unexpected_errors_become_store_errors_and_the_writer_survives() -> None:
    async def scenario() -> tuple[object, object]:
        rec = Recorder()
        writer = GroupCommitWriter(rec)
        await writer.start()
        rec.crash = True
        first = await asyncio.gather(writer.submit([change("a@example.com")]), return_exceptions=True)
        rec.crash = False
        second = await writer.submit([change("b@example.com")])
        await writer.stop()
        return first[0], second

    first, second = asyncio.run(scenario())
    assert isinstance(first, StoreError) and "driver exploded" not in str(first)
    assert isinstance(second, list) and second[0].address == "b@example.com"


def test_stop_finishes_accepted_work_then_refuses() -> None:
    async def scenario() -> tuple[list[object], Recorder]:
        rec = Recorder(delay=0.01)
        writer = GroupCommitWriter(rec)
        await writer.start()
        tasks = [asyncio.create_task(writer.submit([change(f"u{i}@example.com")])) for i in range(40)]
        await asyncio.sleep(0)  # let every task enqueue
        await writer.stop()
        results: list[object] = list(await asyncio.gather(*tasks, return_exceptions=True))
        with pytest.raises(WriterClosed):
            await writer.submit([change("late@example.com")])
        return results, rec

    results, rec = asyncio.run(scenario())
    assert all(isinstance(r, list) for r in results)
    assert sum(len(t) for t in rec.transactions) == 40


def test_writer_on_the_real_store(kit: Unsubkit) -> None:
    """200 concurrent opt-outs through the real store: all durable, far fewer transactions."""
    pid = kit.store.purpose("marketing").id

    async def scenario() -> tuple[list[list[Event]], GroupCommitWriter]:
        writer = GroupCommitWriter(kit.record, max_batch=64)
        await writer.start()
        try:
            res = await asyncio.gather(*(writer.submit([change(f"w{i}@example.com", pid)]) for i in range(200)))
        finally:
            await writer.stop()
        return list(res), writer

    results, writer = asyncio.run(scenario())
    assert writer.committed == 200
    assert writer.batches < 200
    assert all(r[0].changed for r in results)
    assert len({r[0].id for r in results}) == 200
    for i in (0, 99, 199):
        assert not kit.can_send(f"w{i}@example.com", "marketing")
