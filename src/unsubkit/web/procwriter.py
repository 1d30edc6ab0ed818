"""Group commit in a process of its own: the durable writer off the web process's GIL.

:class:`~unsubkit.web.writer.GroupCommitWriter` records in a thread of the web process. Its
Python work (statements, rows, results) then takes turns with the event loop for one GIL, and
on a busy server the two halves wait for each other. :class:`ProcessWriter` hands each batch
to a child process instead (``python -m unsubkit.web.procwriter``) over a private socket pair,
so recording runs on another core while the event loop goes on parsing and answering.

The contract is the same: a request's future resolves only after the child has committed (and
fsync'd) the transaction holding its event, so a 200 still means "on disk". The child is spawned
(not forked) from a clean interpreter, receives the settings over the socket, opens its own
store, answers each frame of requests with one frame of outcomes, and exits when the socket
closes: a parent killed with ``kill -9`` leaves no writer behind. When the child dies, the
requests it held fail with :class:`StoreBusy` (nothing acknowledged is lost; clients retry)
and the next request starts a new one.

Frames are a 4-byte big-endian length and a pickle. Pickle is safe here: both ends are this
program, over a socket pair no one else holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

from ..consent.model import Action, ConsentChange, ConsentLevel, Mechanism, RequestMeta, Scope, ScopeKind
from ..errors import StoreBusy, StoreError
from .writer import WriterClosed, commit_requests

__all__ = ["ProcessWriter", "Recorded"]

log = logging.getLogger("unsubkit.writer")

_LEN = struct.Struct(">I")
#: How long the child may take to import, open its store and say it is ready.
START_TIMEOUT = 60.0
#: How long ``stop`` waits for accepted requests, and then for the child to exit.
STOP_TIMEOUT = 30.0
#: A request unanswered this long means a stuck child (SQLite's own lock wait is 30 s): it is
#: killed, its requests fail as retryable and the next request starts a new one.
REQUEST_TIMEOUT = 60.0
#: After a failed start, requests fail at once (503) for this long instead of each trying again.
RESTART_BACKOFF = 2.0


class Recorded(NamedTuple):
    id: int
    changed: bool


#: A change on the wire: a flat tuple of str/int/None. Pickling the dataclasses themselves (a
#: Python ``__getstate__`` per object, enums by reference) cost the event loop ~6 us per change.
Wire = tuple[Any, ...]


def to_wire(ch: ConsentChange) -> Wire:
    s, m = ch.scope, ch.meta
    return (ch.address, s.kind.value, s.purpose_id, s.topic_id, ch.action.value, ch.source, ch.reason,
            ch.mechanism.value, ch.brand, ch.message_id, int(ch.level), ch.contact_id, m.client_ip,
            m.user_agent, ch.token_issued_at, ch.replace_with)


def from_wire(w: Wire) -> ConsentChange:
    (address, kind, purpose_id, topic_id, action, source, reason, mechanism, brand, message_id, level,
     contact_id, client_ip, user_agent, token_issued_at, replace_with) = w
    return ConsentChange(
        address=address, scope=Scope(ScopeKind(kind), purpose_id, topic_id), action=Action(action),
        source=source, reason=reason, mechanism=Mechanism(mechanism), brand=brand, message_id=message_id,
        level=ConsentLevel(level), contact_id=contact_id, meta=RequestMeta(client_ip, user_agent),
        token_issued_at=token_issued_at, replace_with=replace_with,
    )


def _frame(obj: object) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(data)) + data


class _Link(asyncio.Protocol):
    """The parent's end of the socket pair: frames in, straight to the writer.

    A protocol rather than a stream reader: replies resolve their requests in the same turn of
    the event loop that reads them (a reader task would add a turn, and under load every turn
    of the loop costs milliseconds of latency).
    """

    def __init__(self, owner: ProcessWriter) -> None:
        self.owner = owner
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.greeting: asyncio.Future[Any] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= _LEN.size:
            (n,) = _LEN.unpack_from(self.buf)
            if len(self.buf) < _LEN.size + n:
                return
            try:
                obj = pickle.loads(bytes(self.buf[_LEN.size : _LEN.size + n]))  # noqa: S301 - our child
            except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError) as exc:
                log.error("unreadable frame from the writer process: %s", exc)
                assert self.transport is not None
                self.transport.abort()
                return
            del self.buf[: _LEN.size + n]
            if not self.greeting.done():
                self.greeting.set_result(obj)
            elif self is self.owner._link:
                self.owner._on_reply(obj)
            # else: a late greeting from a child whose start was given up; it is being closed

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.greeting.done():
            self.greeting.set_exception(ConnectionError("the writer process closed the connection"))
        if not self.lost.done():
            self.lost.set_result(None)
        self.owner._on_lost(self)


class ProcessWriter:
    """Group commit through a child process (see the module text)."""

    def __init__(self, settings: Any, *, max_batch: int = 256, python: str | None = None,
                 request_timeout: float = REQUEST_TIMEOUT) -> None:
        self._settings = settings
        self._max_batch = max_batch
        self._python = python or sys.executable
        self._request_timeout = request_timeout
        self._ids = itertools.count()
        #: Request id -> (future, when it was submitted), oldest first.
        self._pending: dict[int, tuple[asyncio.Future[list[Recorded]], float]] = {}
        self._outgoing: list[tuple[int, list[Wire]]] = []
        self._flush_scheduled = False
        self._child: subprocess.Popen[bytes] | None = None
        self._link: _Link | None = None
        #: The start in progress, shared by every request that needs a child meanwhile.
        self._starting: asyncio.Task[_Link] | None = None
        self._failed_at = float("-inf")
        self._watchdog: asyncio.Task[None] | None = None
        self._reaping: set[asyncio.Future[Any]] = set()
        self._closing = False
        self._drained: asyncio.Event | None = None
        self.batches = 0
        self.committed = 0
        #: Times a writer process died (or was killed, stuck) while this server was running.
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The current writer process, if any."""
        return self._child.pid if self._child is not None and self._link is not None else None

    # lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self._ensure_child()
        self._watchdog = asyncio.create_task(self._watch(), name="unsubkit-writer-watchdog")

    async def stop(self) -> None:
        """Finish every accepted request (waiting at most ``STOP_TIMEOUT``), then close the
        socket and wait for the child."""
        self._closing = True
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, StoreError):
                await self._starting
        if self._pending:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), STOP_TIMEOUT)
            except TimeoutError:
                log.error("writer process gave no answer for %d request(s) in %.0f s; killing it",
                          len(self._pending), STOP_TIMEOUT)
                self._kill_child()
                self._fail(list(self._pending), StoreBusy("the writer process stopped; please retry"))
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        await self._close_child()
        if self._reaping:
            await asyncio.gather(*self._reaping, return_exceptions=True)

    async def _ensure_child(self) -> _Link:
        if self._link is not None:
            return self._link
        if self._closing:
            raise WriterClosed("server is shutting down")
        loop = asyncio.get_running_loop()
        if self._starting is None:
            if loop.time() - self._failed_at < RESTART_BACKOFF:
                raise StoreBusy("the writer process is restarting")
            self._starting = asyncio.create_task(self._start_child(), name="unsubkit-writer-start")
        start = self._starting
        try:
            # Shielded: a request given up by its client must not cancel the start for the others.
            return await asyncio.shield(start)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if start.cancelled() and not (task and task.cancelling()):
                raise WriterClosed("server is shutting down") from None
            raise

    async def _start_child(self) -> _Link:
        try:
            return await asyncio.wait_for(self._spawn(), START_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            self._failed_at = asyncio.get_running_loop().time()
            log.error("the writer process did not start: %s", exc or type(exc).__name__)
            raise StoreBusy(f"the writer process did not start: {exc or type(exc).__name__}") from exc
        finally:
            self._starting = None

    async def _spawn(self) -> _Link:
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair()
        proc: subprocess.Popen[bytes] | None = None
        link: _Link | None = None
        try:
            try:
                proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                    [self._python, "-m", "unsubkit.web.procwriter", str(child.fileno())],
                    pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
                )
            finally:
                child.close()
            _, link = await loop.create_connection(lambda: _Link(self), sock=parent)
            assert link.transport is not None
            link.transport.write(_frame((self._settings, self._max_batch)))
            ready = await link.greeting
            if ready != ("ready", proc.pid):
                raise OSError(f"unexpected greeting from the writer process: {ready!r}")
        except BaseException:
            # Given up (failed, timed out, cancelled): nothing of this attempt may linger.
            if link is not None and link.transport is not None:
                link.transport.abort()
            else:
                parent.close()
            if proc is not None:
                self._reap(proc, kill=True)
            raise
        self._child, self._link = proc, link
        log.debug("writer process %d ready", proc.pid)
        return link

    def _reap(self, proc: subprocess.Popen[bytes], *, kill: bool) -> None:
        """Kill (if asked) and wait for ``proc`` off the event loop: no zombie is left behind."""
        if kill and proc.poll() is None:
            proc.kill()
        fut = asyncio.get_running_loop().run_in_executor(None, proc.wait)
        self._reaping.add(fut)
        fut.add_done_callback(self._reaping.discard)

    def _kill_child(self) -> None:
        if self._child is not None and self._child.poll() is None:
            self._child.kill()  # its socket closes: _on_lost fails what it held

    async def _close_child(self) -> None:
        link, child = self._link, self._child
        self._link = self._child = None
        if link is not None and link.transport is not None:
            link.transport.close()  # the child sees the end of its input and exits
            await link.lost
        if child is not None:
            try:
                await asyncio.to_thread(child.wait, STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.error("writer process %d did not exit; killing it", child.pid)
                child.kill()
                await asyncio.to_thread(child.wait)

    async def _watch(self) -> None:
        """Kill a child that stopped answering (stuck, or stopped with SIGSTOP)."""
        while True:
            await asyncio.sleep(min(1.0, self._request_timeout / 4))
            oldest = next(iter(self._pending.values()), None)
            if oldest is None or self._child is None:
                continue
            age = asyncio.get_running_loop().time() - oldest[1]
            if age > self._request_timeout:
                log.error("writer process %d has not answered for %.0f s; killing it", self._child.pid, age)
                self._kill_child()

    # requests ----------------------------------------------------------------------------

    async def submit(self, changes: Sequence[ConsentChange]) -> list[Recorded]:
        if self._closing:
            raise WriterClosed("server is shutting down")
        if not changes:
            return []
        if self._link is None:
            await self._ensure_child()
            if self._closing:
                raise WriterClosed("server is shutting down")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Recorded]] = loop.create_future()
        rid = next(self._ids)
        self._pending[rid] = (fut, loop.time())
        self._outgoing.append((rid, [to_wire(ch) for ch in changes]))
        if not self._flush_scheduled:
            # Every request of this turn of the event loop goes in one frame (one pickle, one write).
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._outgoing = self._outgoing, []
        if not batch:
            return
        link = self._link
        if link is None or link.transport is None or link.transport.is_closing():
            self._fail([rid for rid, _ in batch], StoreBusy("the writer process is restarting"))
            return
        link.transport.write(_frame(batch))

    def _on_reply(self, reply: Any) -> None:
        batches, committed, outcomes = reply
        self.batches += batches
        self.committed += committed
        pending = self._pending
        for rid, result in outcomes:
            entry = pending.pop(rid, None)
            if entry is None or entry[0].done():
                continue
            if isinstance(result, StoreError):
                entry[0].set_exception(result)
            else:
                entry[0].set_result([Recorded(i, c) for i, c in result])
        if not pending and self._drained is not None:
            self._drained.set()

    def _on_lost(self, link: _Link) -> None:
        if link is not self._link:
            return  # closed on purpose (stop), or a start that was given up
        # The child is gone. What it held was never acknowledged: those requests fail as
        # retryable, and the next request starts a new child.
        child = self._child
        code = child.poll() if child is not None else None
        log.error("writer process died (exit %s); %d request(s) to be retried by their clients",
                  code, len(self._pending))
        self.restarts += 1
        self._link = None
        self._child = None
        if child is not None:
            self._reap(child, kill=True)
        self._fail(list(self._pending), StoreBusy("the writer process stopped; please retry"))

    def _fail(self, rids: list[int], exc: StoreError) -> None:
        for rid in rids:
            entry = self._pending.pop(rid, None)
            if entry is not None and not entry[0].done():
                entry[0].set_exception(exc)
        if not self._pending and self._drained is not None:
            self._drained.set()


# -- the child ------------------------------------------------------------------------------


class _Frames:
    """Length-prefixed frames off a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def fill(self, *, block: bool) -> None:
        try:
            data = self.sock.recv(1 << 20, 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        if not data:
            self.eof = True
        self.buf += data

    def take(self) -> list[Any]:
        out = []
        while len(self.buf) >= _LEN.size:
            (n,) = _LEN.unpack_from(self.buf)
            if len(self.buf) < _LEN.size + n:
                break
            out.append(pickle.loads(bytes(self.buf[_LEN.size : _LEN.size + n])))  # noqa: S301 - our parent
            del self.buf[: _LEN.size + n]
        return out

    def next(self) -> list[Any]:
        """The frames available now, blocking for the first; empty at end of stream."""
        frames = self.take()
        while not frames and not self.eof:
            self.fill(block=True)
            frames = self.take()
        if frames:
            # Whatever else has arrived meanwhile joins this batch (group commit).
            self.fill(block=False)
            frames += self.take()
        return frames


def _child_main(fd: int) -> int:
    # The parent decides when this process ends (by closing the socket): a Ctrl-C or a TERM
    # for the whole process group must not cut a batch short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    frames = _Frames(sock)
    first = frames.next()
    if not first:
        return 0
    settings, max_batch = first[0]
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s[writer]: %(message)s")
    from ..errors import UnsubkitError
    from ..service import Unsubkit

    try:
        kit = Unsubkit.open(settings)
    except UnsubkitError as exc:
        log.error("the writer process cannot open the store: %s", exc)
        return 1
    # As in the web process: what start-up loaded stays, so full collections skip it.
    gc.collect()
    gc.freeze()
    try:
        sock.sendall(_frame(("ready", os.getpid())))
        requests = [(rid, [from_wire(w) for w in ws]) for f in first[1:] for rid, ws in f]
        while True:
            requests += [(rid, [from_wire(w) for w in ws]) for f in frames.next() for rid, ws in f]
            if not requests:
                return 0  # end of stream: the parent has gone
            sock.sendall(_frame(_commit(kit.record, requests, max_batch)))
            requests = []
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the parent went away after handing work over; what committed stays committed
    finally:
        kit.close()


def _commit(
    record: Any, requests: Sequence[tuple[int, Sequence[ConsentChange]]], max_batch: int
) -> tuple[int, int, list[tuple[int, Any]]]:
    """Commit in chunks of at most ``max_batch`` changes; (transactions, changes, outcomes)."""
    outcomes: list[tuple[int, Any]] = []
    batches = committed = 0
    chunk: list[tuple[int, Sequence[ConsentChange]]] = []
    size = 0
    for i, req in enumerate(requests):
        chunk.append(req)
        size += len(req[1])
        if size >= max_batch or i == len(requests) - 1:
            results = commit_requests(record, [changes for _, changes in chunk])
            ok = [r for r in results if not isinstance(r, StoreError)]
            batches += 1 if ok else 0
            committed += sum(len(r) for r in ok)
            for (rid, _), res in zip(chunk, results, strict=True):
                outcomes.append((rid, res if isinstance(res, StoreError) else [(e.id, e.changed) for e in res]))
            chunk, size = [], 0
    return batches, committed, outcomes


if __name__ == "__main__":
    sys.exit(_child_main(int(sys.argv[1])))
