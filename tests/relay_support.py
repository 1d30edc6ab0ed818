"""Test servers for the relay: an upstream sink (real aiosmtpd) and the relay on its own loop."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from conftest import free_port
from unsubkit.relay import RelayConfig, RelayServer
from unsubkit.service import Unsubkit


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def msg(self) -> EmailMessage:
        m = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(m, EmailMessage)
        return m


@dataclass
class SinkHandler:
    """Stores what it receives. ``rcpt_replies[address]`` is a queue of replies RCPT gives
    that address before accepting it (e.g. one ``451``, then success); ``refuse[address]``
    is given every time."""

    received: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)
    refuse: dict[str, str] = field(default_factory=dict)
    data_reply: str = "250 2.0.0 Ok: queued"
    #: Seconds DATA takes before its reply (a slow or hung upstream).
    data_delay: float = 0.0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if address.lower() in self.refuse:
            return self.refuse[address.lower()]
        queue = self.rcpt_replies.get(address.lower())
        if queue:
            return queue.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_reply.startswith("250"):
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          envelope.original_content))
        return self.data_reply

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]


@contextmanager
def sink(**controller_kwargs: Any) -> Iterator[tuple[SinkHandler, int]]:
    handler = SinkHandler()
    port = free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port, **controller_kwargs)
    ctl.start()
    try:
        yield handler, port
    finally:
        ctl.stop()


class RelayThread:
    """A :class:`RelayServer` running on an event loop in a background thread."""

    def __init__(self, kit: Unsubkit, config: RelayConfig) -> None:
        self.kit = kit
        self.config = config
        self.server: RelayServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - surfaced to the test by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with RelayServer(self.kit, self.config) as srv:
            self.server = srv
            self._ready.set()
            await self._stop.wait()

    def start(self) -> RelayThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        assert self.server is not None
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    @property
    def stats(self) -> Any:
        assert self.server is not None and self.server.handler is not None
        return self.server.handler.stats
