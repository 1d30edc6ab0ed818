"""``init``, ``serve``, ``keys`` and ``headers``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..clock import to_datetime
from ..consent.model import PurposeKind
from ..errors import UnsubkitError
from ..keystore import add_key, ensure_data_dir, load_ring
from ..store import SQLStore
from .common import fail, get_settings, open_kit, print_json

__all__ = ["register"]

CONFIG_TEMPLATE = """\
# unsubkit settings. Every key can be overridden by UNSUBKIT_<KEY> in the environment.
database_url = "sqlite:///./unsubkit.db"   # or postgresql://user@host/db
base_url = "http://127.0.0.1:8080"         # public base of the one-click URLs (https in production)
data_dir = "./.unsubkit"                   # keys live here (mode 0700)
# mailto_address = "unsubscribe@example.com"
# api_key = "change-me"                    # enables the admin API at /api/v1

[brands.default]
enabled = true
one_click = true
token_lifetime_days = 180
"""

keys_app = typer.Typer(help="Token key ring: rotate and list keys (never shows key material).",
                       no_args_is_help=True)


def init(
    ctx: typer.Context,
    config_path: Path = typer.Option(Path("unsubkit.toml"), "--write-config",
                                     help="Where to write a starter config if none exists."),
) -> None:
    """Create the config file, data dir, first key and database. Safe to run twice."""
    import os

    target = Path(os.environ.get("UNSUBKIT_CONFIG", str(config_path)))
    created: list[str] = []
    if not target.exists():
        target.write_text(CONFIG_TEMPLATE)
        created.append(f"config {target}")
    settings = get_settings(ctx)
    ensure_data_dir(settings.data_dir)
    if not settings.keys_path.exists():
        key = add_key(settings.keys_path, time.time())
        created.append(f"key {key.id}")
    store = SQLStore(settings.database_url)
    try:
        store.migrate()
        for name, kind in (("marketing", PurposeKind.COMMERCIAL), ("transactional", PurposeKind.TRANSACTIONAL)):
            store.ensure_purpose(name, kind)
    finally:
        store.close()
    created.append("database schema up to date")
    typer.echo("initialized: " + ", ".join(created))


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, help="Bind address (default from settings: 127.0.0.1)."),
    port: int | None = typer.Option(None, help="HTTP port (default from settings: 8080)."),
    smtp_host: str | None = typer.Option(None, "--smtp-host",
                                         help="mailto listener bind address (default 127.0.0.1)."),
    smtp_port: int | None = typer.Option(None, "--smtp-port",
                                         help="mailto listener port (default from settings: 2525)."),
    lmtp: bool | None = typer.Option(None, "--lmtp/--smtp",
                                     help="Speak LMTP (Postfix lmtp: transport) instead of SMTP."),
    no_smtp: bool = typer.Option(False, "--no-smtp", help="Do not start the mailto listener."),
    no_webhooks: bool = typer.Option(False, "--no-webhooks",
                                     help="Do not run the webhook worker here (run `unsubkit webhooks work`)."),
) -> None:
    """Run the one-click endpoint, pages, admin API and the mailto (SMTP/LMTP) listener."""
    import uvicorn

    from ..web import create_app

    settings = get_settings(ctx)
    kit = open_kit(settings=settings)
    try:
        kit.store.migrate()
    except UnsubkitError as exc:
        fail(str(exc))
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    services: list[Any] = []
    try:
        from ..mail.listener import listener_services

        services.extend(listener_services(settings, host=smtp_host, port=smtp_port, lmtp=lmtp,
                                          enabled=not no_smtp))
    except UnsubkitError as exc:
        fail(str(exc))
    if not no_webhooks:
        from ..hooks import webhook_service

        services.append(webhook_service)
    app = create_app(kit, services=services)
    # Access logs are off: request paths carry tokens, which are capabilities.
    uvicorn.run(app, host=host or settings.host, port=port if port is not None else settings.port,
                access_log=False, log_level=settings.log_level, lifespan="on")


@keys_app.command("rotate")
def keys_rotate(ctx: typer.Context) -> None:
    """Add a new current key; older keys keep opening tokens already sent."""
    settings = get_settings(ctx)
    if not settings.keys_path.exists():
        fail("not initialized: run `unsubkit init` first")
    key = add_key(settings.keys_path, time.time())
    typer.echo(f"new current key {key.id}")


@keys_app.command("list")
def keys_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Key ids and creation dates, newest (current) first."""
    settings = get_settings(ctx)
    ring = load_ring(settings.keys_path)
    rows = [
        {"id": k.id, "created_at": to_datetime(k.created_at).isoformat(), "current": i == 0}
        for i, k in enumerate(ring.keys)
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "created", "current")
    for r in rows:
        table.add_row(str(r["id"]), str(r["created_at"]), "yes" if r["current"] else "")
    Console().print(table)


def headers(
    ctx: typer.Context,
    to: str = typer.Option(..., "--to", help="The one recipient address."),
    purpose: str = typer.Option(..., "--purpose", help="Purpose name."),
    topic: str | None = typer.Option(None, "--topic", help="Topic name within the purpose."),
    brand: str | None = typer.Option(None, "--brand", help="Brand (default: default)."),
    message_id: str | None = typer.Option(None, "--message-id", help="Message-ID to bind."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON with URLs and token."),
) -> None:
    """Print List-Unsubscribe and List-Unsubscribe-Post for one recipient."""
    kit = open_kit(ctx)
    try:
        result = kit.headers_for(to, purpose, topic, brand=brand, message_id=message_id)
    finally:
        kit.close()
    if as_json:
        print_json(result.as_json())
        return
    if result.headers is None:
        reason = "transactional purpose" if not result.purpose.commercial else "brand disabled"
        typer.echo(f"# no unsubscribe headers: {reason}", err=True)
        return
    typer.echo(result.headers.lines(linesep="\n"), nl=False)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
    app.command("headers")(headers)
