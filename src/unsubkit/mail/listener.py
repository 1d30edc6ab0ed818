"""The mailto listener as a background service of ``unsubkit serve``.

It runs on the web app's event loop (``create_app(kit, services=[...])``) with its own
group-commit writer, so many concurrent sessions share one fsync while each ``250`` still
waits for its own commit. ``serve`` binds the socket before the app starts
(:func:`listener_services`), so a port in use is one clear error line, not a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ..errors import ConfigError
from ..service import Unsubkit
from ..settings import Settings
from ..web.app import BackgroundService
from ..web.writer import GroupCommitWriter, Writer
from .fromcheck import FromChecker, txt_lookup_for
from .handler import MailtoHandler, Submit
from .mailto import Directory
from .processor import MailtoProcessor
from .protocol import MailtoLMTP, MailtoSMTP

__all__ = ["ListenerConfig", "MailtoListener", "bind_socket", "from_checker_for",
           "listener_services", "mailto_service"]

log = logging.getLogger("unsubkit.mail")


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    host: str = "127.0.0.1"
    port: int = 2525
    lmtp: bool = False
    max_message_size: int = 256 * 1024
    max_recipients: int = 50
    idle_timeout: float = 300.0
    #: Name in the greeting; resolved once (aiosmtpd would call getfqdn() per connection).
    hostname: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, host: str | None = None, port: int | None = None,
                      lmtp: bool | None = None) -> ListenerConfig:
        return cls(
            host=host or settings.smtp_host,
            port=settings.smtp_port if port is None else port,
            lmtp=settings.smtp_lmtp if lmtp is None else lmtp,
            max_message_size=settings.smtp_max_message_size,
            max_recipients=settings.smtp_max_recipients,
            idle_timeout=settings.smtp_idle_timeout,
        )

    @property
    def protocol(self) -> str:
        return "LMTP" if self.lmtp else "SMTP"


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket, or :class:`ConfigError` saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0 (what socket.create_server leaves): asyncio sets TCP_NODELAY on
    # accepted connections only when the socket says TCP, and without it Nagle's algorithm
    # and delayed ACKs hold each pipelined reply back for ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(512)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen for mail on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def from_checker_for(settings: Settings) -> FromChecker:
    return FromChecker(txt_lookup_for(settings.mailto_dns_file), timeout=settings.mailto_dns_timeout)


class MailtoListener:
    """``async with MailtoListener(kit, config):`` serves SMTP (or LMTP) until the block ends."""

    def __init__(
        self,
        kit: Unsubkit,
        config: ListenerConfig,
        *,
        sock: socket.socket | None = None,
        from_checker: FromChecker | None = None,
        submit: Submit | None = None,
    ) -> None:
        self.kit = kit
        self.config = config
        self._sock = sock
        self._from_checker = from_checker
        self._submit = submit
        self._writer: GroupCommitWriter | None = None
        self._server: asyncio.Server | None = None
        self.handler: MailtoHandler | None = None
        self.port = config.port

    async def __aenter__(self) -> MailtoListener:
        # aiosmtpd logs every command with its arguments at INFO: tokens are capabilities and
        # sender addresses are personal data, so only its warnings go to the log.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        submit = self._submit
        if submit is None:
            self._writer = GroupCommitWriter(self.kit.record, max_batch=self.kit.settings.max_batch)
            await self._writer.start()
            submit = self._writer.submit
        processor = MailtoProcessor(self.kit, from_checker=self._from_checker)
        handler = MailtoHandler(processor, submit, lmtp=self.config.lmtp,
                                max_recipients=self.config.max_recipients)
        self.handler = handler
        cfg = self.config
        hostname = cfg.hostname or socket.gethostname() or "localhost"
        cls: type[Any] = MailtoLMTP if cfg.lmtp else MailtoSMTP

        def protocol() -> Any:
            return cls(handler, data_size_limit=cfg.max_message_size, enable_SMTPUTF8=True,
                       hostname=hostname, ident="unsubkit", timeout=cfg.idle_timeout, loop=loop)

        try:
            if self._sock is not None:
                self._server = await loop.create_server(protocol, sock=self._sock)
            else:
                self._server = await loop.create_server(protocol, cfg.host, cfg.port, backlog=512)
        except OSError as exc:
            await self._stop_writer()
            raise ConfigError(f"cannot listen for mail on {cfg.host}:{cfg.port}: {exc.strerror}") from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("mailto listener (%s) on %s:%d for %d address(es)", cfg.protocol, cfg.host,
                 self.port, len(processor.directory.mailboxes))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.close()
        # Sessions already waiting on a commit still get their 250: the writer drains first.
        await self._stop_writer()

    async def _stop_writer(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None


def mailto_service(config: ListenerConfig, *, sock: socket.socket | None = None,
                   from_checker: FromChecker | None = None) -> BackgroundService:
    """A ``create_app(services=[...])`` entry running the listener beside the web app."""

    def factory(kit: Unsubkit, writer: Writer) -> MailtoListener:
        # The server's own writer: one-click and mailto opt-outs share its transactions instead
        # of two writers taking turns for SQLite's lock.
        return MailtoListener(kit, config, sock=sock, from_checker=from_checker, submit=writer.submit)

    return factory


def listener_services(settings: Settings, *, host: str | None = None, port: int | None = None,
                      lmtp: bool | None = None, enabled: bool = True) -> Sequence[BackgroundService]:
    """What ``serve`` starts: the listener (socket already bound), or nothing when switched
    off or no brand has an unsubscribe address.

    A port that was asked for (``--smtp-port`` or ``smtp_port``) must be free, else
    :class:`ConfigError`; the *default* port being taken only costs a warning, so a second
    server on one machine still serves HTTP.
    """
    if not enabled or not settings.smtp_enabled:
        return []
    if not Directory.from_settings(settings).mailboxes:
        log.info("no brand has a mailto address: the mailto listener is not started")
        return []
    config = ListenerConfig.from_settings(settings, host=host, port=port, lmtp=lmtp)
    checker = from_checker_for(settings)
    try:
        sock = bind_socket(config.host, config.port)
    except ConfigError as exc:
        if port is not None or "smtp_port" in settings.model_fields_set:
            raise
        log.warning("%s; the mailto listener is not started (set smtp_port or --smtp-port)", exc)
        return []
    return [mailto_service(config, sock=sock, from_checker=checker)]
