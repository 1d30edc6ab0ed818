"""The relay as a server: ``async with RelayServer(kit, config):`` listens until the block ends.

On exit it stops accepting connections, lets every transaction already past DATA finish
(its copies forwarded, its reply given) for up to ``drain_timeout`` seconds, then closes the
upstream connections. A transaction cut off before its reply was never acknowledged, so the
app still holds the message and retries it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import SMTP

from ..errors import ConfigError
from ..service import Unsubkit
from ..settings import Settings
from .handler import Network, RelayHandler
from .ledger import RetryLedger
from .planner import Planner
from .upstream import Security, Upstream, UpstreamConfig

__all__ = ["RelayConfig", "RelayServer", "parse_networks"]

log = logging.getLogger("unsubkit.relay")


def parse_networks(values: list[str]) -> tuple[Network, ...]:
    """``["127.0.0.0/8", "10.1.2.3"]`` as networks, or :class:`ConfigError` naming the bad one."""
    out: list[Network] = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"relay_allowed_clients: {v!r} is not an IP network like 10.0.0.0/8") from None
    return tuple(out)


@dataclass(frozen=True, slots=True)
class RelayConfig:
    upstream: UpstreamConfig
    host: str = "127.0.0.1"
    port: int = 2526
    networks: tuple[Network, ...] = field(
        default_factory=lambda: parse_networks(["127.0.0.0/8", "::1/128"]))
    default_purpose: str | None = None
    default_brand: str | None = None
    max_message_size: int = 25 * 1024 * 1024
    max_recipients: int = 100
    idle_timeout: float = 300.0
    retry_memory: float = 5 * 86400.0
    drain_timeout: float = 30.0
    #: Our name in the greeting, in EHLO upstream and in bounces.
    hostname: str = "localhost"

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        host: str | None = None,
        port: int | None = None,
        upstream_host: str | None = None,
        upstream_port: int | None = None,
        security: Security | None = None,
        default_purpose: str | None = None,
        default_brand: str | None = None,
        allow: list[str] | None = None,
        hostname: str | None = None,
    ) -> RelayConfig:
        """The settings' ``relay_*`` values, with command-line overrides."""
        up_host = upstream_host or settings.relay_upstream_host
        if not up_host:
            raise ConfigError("no upstream smarthost: set relay_upstream_host or pass --upstream HOST:PORT")
        name = hostname or socket.gethostname() or "localhost"
        upstream = UpstreamConfig(
            host=up_host,
            port=upstream_port or settings.relay_upstream_port,
            security=security or settings.relay_upstream_security,
            username=settings.relay_upstream_username,
            password=settings.relay_upstream_password,
            verify_tls=settings.relay_upstream_verify_tls,
            ca_file=settings.relay_upstream_ca_file,
            timeout=settings.relay_upstream_timeout,
            connections=settings.relay_upstream_connections,
            local_hostname=name,
        )
        return cls(
            upstream=upstream,
            host=host or settings.relay_host,
            port=settings.relay_port if port is None else port,
            networks=parse_networks(allow if allow else settings.relay_allowed_clients),
            default_purpose=default_purpose or settings.relay_default_purpose,
            default_brand=default_brand or settings.relay_default_brand,
            max_message_size=settings.relay_max_message_size,
            max_recipients=settings.relay_max_recipients,
            idle_timeout=settings.relay_idle_timeout,
            retry_memory=settings.relay_retry_memory,
            hostname=name,
        )


class RelayServer:
    def __init__(self, kit: Unsubkit, config: RelayConfig, *, sock: socket.socket | None = None) -> None:
        self.kit = kit
        self.config = config
        self._sock = sock
        self._server: asyncio.Server | None = None
        self.upstream: Upstream | None = None
        self.handler: RelayHandler | None = None
        self.port = config.port

    async def __aenter__(self) -> RelayServer:
        # aiosmtpd logs every command with its arguments at INFO (addresses are personal data).
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        cfg = self.config
        if cfg.default_purpose is not None:
            # A misspelt default purpose would refuse every message: say so at start instead.
            await asyncio.to_thread(self.kit.resolve, cfg.default_purpose)
        if cfg.default_brand is not None:
            self.kit.settings.brand(cfg.default_brand)
        self.upstream = Upstream(cfg.upstream)
        planner = Planner(self.kit, default_purpose=cfg.default_purpose, default_brand=cfg.default_brand)
        handler = RelayHandler(
            planner, self.upstream, networks=cfg.networks,
            ledger=RetryLedger(ttl=cfg.retry_memory, clock=self.kit.clock),
            max_recipients=cfg.max_recipients, hostname=cfg.hostname, clock=self.kit.clock,
        )
        self.handler = handler
        loop = asyncio.get_running_loop()

        def protocol() -> Any:
            return SMTP(handler, data_size_limit=cfg.max_message_size, enable_SMTPUTF8=True,
                        hostname=cfg.hostname, ident="unsubkit relay", timeout=cfg.idle_timeout,
                        loop=loop)

        try:
            if self._sock is not None:
                self._server = await loop.create_server(protocol, sock=self._sock)
            else:
                self._server = await loop.create_server(protocol, cfg.host, cfg.port, backlog=512)
        except OSError as exc:
            await self.upstream.aclose()
            raise ConfigError(f"cannot listen for mail on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("relay on %s:%d -> upstream %s (%s)", cfg.host, self.port, cfg.upstream.address,
                 cfg.upstream.security)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.close()
        if self.handler is not None:
            try:
                await asyncio.wait_for(self.handler.wait_idle(), self.config.drain_timeout)
            except TimeoutError:
                log.warning("relay: %d transaction(s) still running at shutdown", self.handler.active)
            log.info("relay: stopped; %s", self.handler.stats)
        if self.upstream is not None:
            await self.upstream.aclose()
