"""``webhooks``: endpoints (add, list, remove, rotate-secret, test), replay, dead letters, worker."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
import typer
from rich.console import Console
from rich.table import Table

from ..errors import UnsubkitError, WebhookError
from ..hooks import DeliveryStatus, DeliveryWorker, HookStore, hook_store, sign_headers
from ..hooks.model import TEST, encode_payload, iso_time
from ..service import Unsubkit
from ..web.webhooks_api import DEFAULT_GRACE, check_url, validate_filters
from .common import fail, open_kit, print_json

__all__ = ["parse_since", "register", "webhooks_app"]

webhooks_app = typer.Typer(
    help="Webhook endpoints, deliveries and the delivery worker (Standard Webhooks signatures).",
    no_args_is_help=True,
)

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, now: float) -> float:
    """``2h``, ``30m``, ``7d`` (ago), or an ISO 8601 date/time (UTC when no offset)."""
    value = value.strip()
    m = _RELATIVE.match(value)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise WebhookError(f"--since {value!r}: use e.g. 2h, 7d or 2026-01-31T12:00:00Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


@contextmanager
def _store(ctx: typer.Context) -> Iterator[tuple[Unsubkit, HookStore]]:
    kit = open_kit(ctx)
    try:
        yield kit, hook_store(kit)
    except UnsubkitError as exc:
        fail(str(exc))
    finally:
        kit.close()


@webhooks_app.command("add")
def add(
    ctx: typer.Context,
    url: str = typer.Argument(..., help="Where to POST events (https://...)."),
    brand: list[str] = typer.Option([], "--brand", help="Only this brand's events (repeatable)."),
    purpose: list[str] = typer.Option([], "--purpose", help="Only this purpose's events (repeatable)."),
    event_type: list[str] = typer.Option([], "--event-type",
                                         help="consent.opted_out or consent.opted_in (repeatable)."),
    description: str = typer.Option("", "--description"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Register an endpoint; prints its id and signing secret (shown only this once)."""
    with _store(ctx) as (kit, store):
        validate_filters(kit, brand, purpose, event_type)
        ep = store.add_endpoint(check_url(url), now=kit.clock(), brands=brand, purposes=purpose,
                                event_types=event_type, description=description)
    if as_json:
        print_json({**ep.as_json(), "secret": ep.secret})
        return
    typer.echo(f"id: {ep.id}")
    typer.echo(f"secret: {ep.secret}")
    typer.echo("The secret is shown only now: store it with the receiver.", err=True)


@webhooks_app.command("list")
def list_(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Endpoints with their filters and delivery counts (never secrets)."""
    with _store(ctx) as (_kit, store):
        counts = store.counts()
        rows = [{**ep.as_json(), "deliveries": counts.get(ep.id, {})} for ep in store.endpoints()]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "url", "brands", "purposes", "event types", "delivered", "pending", "dead")
    for r in rows:
        d = r["deliveries"]
        table.add_row(r["id"], r["url"], ",".join(r["brands"]) or "*", ",".join(r["purposes"]) or "*",
                      ",".join(r["event_types"]) or "*", str(d.get("delivered", 0)), str(d.get("pending", 0)),
                      str(d.get("dead", 0)))
    Console().print(table)


@webhooks_app.command("remove")
def remove(ctx: typer.Context, endpoint_id: str = typer.Argument(...)) -> None:
    """Remove an endpoint; its undelivered deliveries are cancelled."""
    with _store(ctx) as (kit, store):
        n = store.remove_endpoint(endpoint_id, now=kit.clock())
    typer.echo(f"removed {endpoint_id} ({n} undelivered deliveries cancelled)")


@webhooks_app.command("rotate-secret")
def rotate_secret(
    ctx: typer.Context,
    endpoint_id: str = typer.Argument(...),
    grace_hours: float = typer.Option(DEFAULT_GRACE / 3600, "--grace-hours",
                                      help="How long the old secret still signs beside the new one."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """New signing secret (shown once); the old one keeps signing too during the grace time."""
    if grace_hours < 0:
        fail("--grace-hours must be >= 0")
    with _store(ctx) as (kit, store):
        ep = store.rotate_secret(endpoint_id, now=kit.clock(), grace=grace_hours * 3600)
    if as_json:
        print_json({**ep.as_json(), "secret": ep.secret})
        return
    typer.echo(f"id: {ep.id}")
    typer.echo(f"secret: {ep.secret}")


@webhooks_app.command("test")
def test(
    ctx: typer.Context,
    endpoint_id: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """POST a signed webhook.test event to the endpoint now; exit 1 unless it answers 2xx."""
    with _store(ctx) as (kit, store):
        ep = store.endpoint(endpoint_id)
        timeout = kit.settings.webhooks.timeout
        now = kit.clock()
    body = encode_payload({"type": TEST, "event_id": None, "time": iso_time(now),
                           "message": "unsubkit webhook test"})
    headers = sign_headers(ep.secrets(now), "msg_test_" + secrets.token_hex(8), now, body)
    headers["Content-Type"] = "application/json"
    started = time.monotonic()
    try:
        resp = httpx.post(ep.url, content=body.encode(), headers=headers, timeout=timeout, follow_redirects=False,
                          trust_env=False)
    except httpx.HTTPError as exc:
        fail(f"{ep.url}: {type(exc).__name__}: {exc}")
    ms = (time.monotonic() - started) * 1000
    ok = 200 <= resp.status_code < 300
    if as_json:
        print_json({"id": ep.id, "url": ep.url, "status": resp.status_code, "ok": ok, "ms": round(ms, 1)})
    else:
        typer.echo(f"{ep.url}: HTTP {resp.status_code} in {ms:.0f} ms")
    if not ok:
        raise typer.Exit(1)


@webhooks_app.command("replay")
def replay(
    ctx: typer.Context,
    endpoint: str | None = typer.Option(None, "--endpoint", help="Only to this endpoint (default: all)."),
    since: str | None = typer.Option(None, "--since", help="Events since: 2h, 7d or an ISO 8601 time."),
    event: list[int] = typer.Option([], "--event", help="This event id (repeatable)."),
    dead: bool = typer.Option(False, "--dead", help="Queue the dead deliveries again."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Deliver past events again (same webhook-id, so receivers can deduplicate)."""
    if not (dead or since or event):
        fail("say what to replay: --since, --event ID or --dead")
    with _store(ctx) as (kit, store):
        now = kit.clock()
        n = store.replay_dead(now=now, target=endpoint) if dead else 0
        if since or event:
            n += store.replay_events(now=now, since=parse_since(since, now) if since else None, event_ids=event,
                                     endpoint_id=endpoint, handlers=kit.settings.handlers)
    if as_json:
        print_json({"queued": n})
    else:
        typer.echo(f"queued {n} deliveries")


@webhooks_app.command("dead")
def dead(
    ctx: typer.Context,
    endpoint: str | None = typer.Option(None, "--endpoint", help="Only this endpoint (or handler)."),
    limit: int = typer.Option(100, "--limit", min=1),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Deliveries that gave up (older than webhooks.max_age and still failing)."""
    with _store(ctx) as (_kit, store):
        rows = store.deliveries(status=DeliveryStatus.DEAD, target=endpoint, limit=limit)
    if as_json:
        print_json([d.as_json() for d in rows])
        return
    table = Table("delivery", "event", "target", "type", "attempts", "created", "last error")
    for d in rows:
        table.add_row(str(d.id), str(d.event_id), d.target, d.event_type, str(d.attempts),
                      iso_time(d.created_at)[:19], (d.last_error or "")[:80])
    Console().print(table)


@webhooks_app.command("work")
def work(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="Deliver what is due now, then exit."),
    concurrency: int | None = typer.Option(None, "--concurrency", min=1, help="Attempts in flight."),
) -> None:
    """Run the delivery worker (as many as you like, on one database)."""
    kit = open_kit(ctx)
    settings = kit.settings
    if concurrency is not None:
        settings = settings.model_copy(
            update={"webhooks": settings.webhooks.model_copy(update={"concurrency": concurrency})}
        )
    try:
        kit.store.migrate()
        logging.basicConfig(level=settings.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        worker = DeliveryWorker(hook_store(kit), settings, clock=kit.clock)
        n = asyncio.run(_work(worker, once))
    except UnsubkitError as exc:
        fail(str(exc))
    finally:
        kit.close()
    if once:
        typer.echo(f"{n} attempts, {worker.delivered} delivered, {worker.failed} failed")


async def _work(worker: DeliveryWorker, once: bool) -> int:
    async with worker.session():
        if once:
            return await worker.drain()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await worker.run(stop)
        return worker.delivered + worker.failed


def register(app: typer.Typer) -> None:
    app.add_typer(webhooks_app, name="webhooks")
