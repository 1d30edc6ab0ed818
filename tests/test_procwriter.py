"""The writer process: group commit in a child, on both backends; the child's death and exit."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from unsubkit.consent.model import Action, ConsentChange, ConsentLevel, Mechanism, RequestMeta, Scope, Source
from unsubkit.errors import StoreBusy
from unsubkit.service import Unsubkit
from unsubkit.web.procwriter import ProcessWriter, Recorded, from_wire, to_wire
from unsubkit.web.writer import WriterClosed

T = TypeVar("T")


def change(address: str, purpose_id: int) -> ConsentChange:
    return ConsentChange(address=address, scope=Scope.purpose(purpose_id), action=Action.OPT_OUT,
                         source=Source.LIST_UNSUBSCRIBE, reason="test", mechanism=Mechanism.ONE_CLICK,
                         meta=RequestMeta("192.0.2.7", "test-agent"))


def run(scenario: Callable[[ProcessWriter], Awaitable[T]], kit: Unsubkit) -> tuple[T, ProcessWriter]:
    async def main() -> tuple[T, ProcessWriter]:
        writer = ProcessWriter(kit.settings, max_batch=64)
        await writer.start()
        try:
            return await scenario(writer), writer
        finally:
            await writer.stop()

    return asyncio.run(main())


def gone(pid: int, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A child we started but nobody reaped yet is a zombie: gone for our purpose.
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_wire_round_trip_keeps_every_field() -> None:
    ch = ConsentChange(
        address="jane@example.com", scope=Scope.topic(3, 9), action=Action.OPT_IN, source="API",
        reason="because", mechanism=Mechanism.PREFERENCE_PAGE, brand="acme", message_id="<m@example.com>",
        level=ConsentLevel.IDENTITY, contact_id=42, meta=RequestMeta("2001:db8::1", "UA/1"),
        token_issued_at=1_767_225_600, replace_with="crm:handler",
    )
    assert from_wire(to_wire(ch)) == ch
    # Every field of a change is on the wire: a new field must be added to to_wire/from_wire.
    assert len(to_wire(ch)) == len(dataclasses.fields(ConsentChange)) - 2 + 3 + 2  # scope: 3, meta: 2


def test_concurrent_opt_outs_are_group_committed_in_the_child(kit: Unsubkit) -> None:
    pid = kit.store.purpose("marketing").id

    async def scenario(writer: ProcessWriter) -> list[list[Recorded]]:
        assert writer.pid is not None and writer.pid != os.getpid()
        return list(await asyncio.gather(*(writer.submit([change(f"w{i}@example.com", pid)]) for i in range(300))))

    results, writer = run(scenario, kit)
    assert writer.committed == 300
    assert writer.batches < 300  # shared transactions
    assert all(r[0].changed for r in results)
    assert len({r[0].id for r in results}) == 300
    for i in (0, 150, 299):
        assert not kit.can_send(f"w{i}@example.com", "marketing")
    # The evidence crossed the process boundary intact.
    ev = kit.store.events("w7@example.com")[0]  # type: ignore[attr-defined]
    assert (ev.client_ip, ev.user_agent, ev.mechanism) == ("192.0.2.7", "test-agent", Mechanism.ONE_CLICK)


def test_a_repeat_in_the_same_batch_is_recorded_unchanged(kit: Unsubkit) -> None:
    pid = kit.store.purpose("marketing").id

    async def scenario(writer: ProcessWriter) -> list[list[Recorded]]:
        return list(await asyncio.gather(*(writer.submit([change("same@example.com", pid)]) for _ in range(2))))

    results, _ = run(scenario, kit)
    assert sorted(r[0].changed for r in results) == [False, True]


def test_a_dead_child_fails_what_it_held_as_retryable_and_is_replaced(kit: Unsubkit) -> None:
    pid = kit.store.purpose("marketing").id

    async def scenario(writer: ProcessWriter) -> tuple[int, int | None, list[object], list[Recorded]]:
        first = writer.pid
        assert first is not None
        os.kill(first, signal.SIGSTOP)  # hold it mid-flight: these requests are never answered
        held = [asyncio.create_task(writer.submit([change(f"held{i}@example.com", pid)])) for i in range(5)]
        await asyncio.sleep(0.2)
        os.kill(first, signal.SIGKILL)
        outcomes: list[object] = list(await asyncio.gather(*held, return_exceptions=True))
        after = await writer.submit([change("after@example.com", pid)])
        return first, writer.pid, outcomes, after

    (first, second, outcomes, after), writer = run(scenario, kit)
    assert all(isinstance(o, StoreBusy) for o in outcomes)
    assert second is not None and second != first
    assert writer.restarts == 1
    assert after[0].changed and not kit.can_send("after@example.com", "marketing")
    # Nothing was acknowledged for the held requests; whatever the dead child did not commit is absent.
    assert all(kit.can_send(f"held{i}@example.com", "marketing") for i in range(5))


def test_stop_finishes_accepted_work_then_refuses_and_the_child_exits(kit: Unsubkit) -> None:
    pid = kit.store.purpose("marketing").id
    child: list[int] = []

    async def main() -> list[object]:
        writer = ProcessWriter(kit.settings)
        await writer.start()
        assert writer.pid is not None
        child.append(writer.pid)
        tasks = [asyncio.create_task(writer.submit([change(f"s{i}@example.com", pid)])) for i in range(50)]
        await asyncio.sleep(0)
        await writer.stop()
        with pytest.raises(WriterClosed):
            await writer.submit([change("late@example.com", pid)])
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    results = asyncio.run(main())
    assert all(isinstance(r, list) and r[0].changed for r in results)
    assert all(not kit.can_send(f"s{i}@example.com", "marketing") for i in range(50))
    assert gone(child[0])


def test_the_child_exits_when_its_parent_goes_away(kit: Unsubkit) -> None:
    async def main() -> int:
        writer = ProcessWriter(kit.settings)
        await writer.start()
        pid = writer.pid
        assert pid is not None and writer._link is not None and writer._link.transport is not None
        writer._link.transport.abort()  # what the child sees of a parent killed with -9
        await asyncio.sleep(0)
        return pid

    assert gone(asyncio.run(main()))


def test_a_child_that_cannot_open_the_store_fails_start_with_store_busy(kit: Unsubkit, tmp_path: object) -> None:
    broken = kit.settings.model_copy(update={"data_dir": kit.settings.data_dir / "missing"})

    async def main() -> None:
        with pytest.raises(StoreBusy, match="did not start"):
            await ProcessWriter(broken).start()

    asyncio.run(main())


def test_a_stuck_child_is_killed_and_replaced(kit: Unsubkit) -> None:
    pid = kit.store.purpose("marketing").id

    async def main() -> tuple[object, list[Recorded], int, int | None, int]:
        writer = ProcessWriter(kit.settings, request_timeout=1.0)
        await writer.start()
        try:
            first = writer.pid
            assert first is not None
            os.kill(first, signal.SIGSTOP)  # alive, holding its socket, answering nothing
            stuck = await asyncio.gather(writer.submit([change("stuck@example.com", pid)]), return_exceptions=True)
            after = await writer.submit([change("fresh@example.com", pid)])
            return stuck[0], after, first, writer.pid, writer.restarts
        finally:
            await writer.stop()

    started = time.monotonic()
    stuck, after, first, second, restarts = asyncio.run(main())
    assert isinstance(stuck, StoreBusy)
    assert time.monotonic() - started < 20
    assert after[0].changed and second != first and restarts == 1
    assert gone(first)


def test_a_failed_start_is_shared_and_not_retried_at_once(kit: Unsubkit) -> None:
    broken = kit.settings.model_copy(update={"data_dir": kit.settings.data_dir / "missing"})
    pid = kit.store.purpose("marketing").id
    spawns = 0

    class Counting(ProcessWriter):
        async def _spawn(self) -> Any:
            nonlocal spawns
            spawns += 1
            return await super()._spawn()

    async def main() -> tuple[list[object], object]:
        writer = Counting(broken)
        try:
            results = await asyncio.gather(*(writer.submit([change(f"x{i}@example.com", pid)]) for i in range(8)),
                                           return_exceptions=True)
            again = await asyncio.gather(writer.submit([change("y@example.com", pid)]), return_exceptions=True)
            return list(results), again[0]
        finally:
            await writer.stop()

    results, again = asyncio.run(main())
    assert all(isinstance(r, StoreBusy) and "did not start" in str(r) for r in results)
    assert isinstance(again, StoreBusy) and "restarting" in str(again)  # within the back-off: no new child
    assert spawns == 1
