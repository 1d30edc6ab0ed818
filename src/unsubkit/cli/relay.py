"""``relay``: run the outbound SMTP relay in front of a smarthost."""

from __future__ import annotations

import asyncio
import logging
import signal

import typer

from ..errors import ConfigError, UnsubkitError
from ..service import Unsubkit
from .common import fail, get_settings, open_kit

__all__ = ["parse_hostport", "register"]


def parse_hostport(value: str, *, what: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port), or :class:`ConfigError`."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what} must be HOST:PORT (e.g. 127.0.0.1:2526), not {value!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


async def _serve(kit: Unsubkit, config: object) -> None:
    from ..relay import RelayConfig, RelayServer

    assert isinstance(config, RelayConfig)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with RelayServer(kit, config) as server:
        typer.echo(
            f"relay listening on {config.host}:{server.port}, forwarding to "
            f"{config.upstream.address} ({config.upstream.security})",
            err=True,
        )
        await stop.wait()


def relay(
    ctx: typer.Context,
    listen: str | None = typer.Option(
        None, "--listen", help="HOST:PORT apps submit to (default from settings: 127.0.0.1:2526)."),
    upstream: str | None = typer.Option(
        None, "--upstream", help="Smarthost HOST:PORT (default: relay_upstream_host/_port)."),
    starttls: bool = typer.Option(False, "--starttls", help="Require STARTTLS to the smarthost (port 587)."),
    tls: bool = typer.Option(False, "--tls", help="Implicit TLS to the smarthost (port 465)."),
    default_purpose: str | None = typer.Option(
        None, "--default-purpose", help="Purpose of messages without X-Unsubkit-Purpose (else refused)."),
    default_brand: str | None = typer.Option(
        None, "--default-brand", help="Brand of messages without X-Unsubkit-Brand (else by From domain)."),
    allow: list[str] | None = typer.Option(
        None, "--allow", help="Client network allowed to submit (repeatable; default loopback only)."),
) -> None:
    """Relay apps' mail to a smarthost, adding unsubscribe headers, body link and DKIM.

    Recipients who opted out of a commercial purpose are not sent the message.

    Upstream credentials come from settings only (relay_upstream_username and UNSUBKIT_RELAY_UPSTREAM_PASSWORD).
    """
    from ..relay import RelayConfig

    if starttls and tls:
        fail("choose one of --starttls and --tls")
    settings = get_settings(ctx)
    try:
        host, port = parse_hostport(listen, what="--listen") if listen else (None, None)
        up_host, up_port = parse_hostport(upstream, what="--upstream") if upstream else (None, None)
        config = RelayConfig.from_settings(
            settings, host=host, port=port, upstream_host=up_host, upstream_port=up_port,
            security="starttls" if starttls else "tls" if tls else None,
            default_purpose=default_purpose, default_brand=default_brand, allow=allow,
        )
    except UnsubkitError as exc:
        fail(str(exc))
    kit = open_kit(settings=settings)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve(kit, config))
    except UnsubkitError as exc:
        fail(str(exc))
    finally:
        kit.close()


def register(app: typer.Typer) -> None:
    app.command("relay")(relay)
