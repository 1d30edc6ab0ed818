"""``consent``, ``purposes`` and ``topics``."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from ..clock import to_datetime
from ..consent.model import PurposeKind
from ..service import event_json
from .common import open_kit, print_json

__all__ = ["consent_app", "purposes_app", "register", "topics_app"]

consent_app = typer.Typer(help="Consent state and events of addresses.", no_args_is_help=True)
purposes_app = typer.Typer(help="Purposes (commercial or transactional).", no_args_is_help=True)
topics_app = typer.Typer(help="Topics within a purpose.", no_args_is_help=True)


@consent_app.command("status")
def status(
    ctx: typer.Context,
    address: str = typer.Argument(..., help="Email address."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Per purpose and topic: opted out or not, plus the events behind it."""
    kit = open_kit(ctx)
    try:
        report = kit.status(address)
    finally:
        kit.close()
    if as_json:
        print_json(report.as_json())
        return
    console = Console()
    table = Table("purpose", "topic", "kind", "opted out", "reason", title=report.address)
    for e in report.entries:
        table.add_row(e.purpose.name, e.topic.name if e.topic else "", str(e.purpose.kind),
                      "yes" if e.opted_out else "no", e.reason)
    console.print(table)
    if report.events:
        ev_table = Table("time", "action", "scope", "source", "reason", "mechanism", title="events")
        for ev in report.events:
            j = event_json(ev)
            ev_table.add_row(to_datetime(ev.at).isoformat(timespec="seconds"), j["action"],
                             f"{j['scope']} {j['purpose_id'] or ''}{'/' + str(j['topic_id']) if j['topic_id'] else ''}",
                             ev.source, ev.reason, j["mechanism"])
        console.print(ev_table)


@purposes_app.command("add")
def purposes_add(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    kind: PurposeKind = typer.Option(PurposeKind.COMMERCIAL, "--kind", help="commercial or transactional"),
    description: str = typer.Option("", "--description"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Add a purpose."""
    kit = open_kit(ctx)
    try:
        p = kit.store.add_purpose(name, kind, description, at=kit.clock())
    finally:
        kit.close()
    if as_json:
        print_json({"id": p.id, "name": p.name, "kind": str(p.kind), "description": p.description})
    else:
        typer.echo(f"purpose {p.name} ({p.kind}) id={p.id}")


@purposes_app.command("list")
def purposes_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """List purposes."""
    kit = open_kit(ctx)
    try:
        rows = [{"id": p.id, "name": p.name, "kind": str(p.kind), "description": p.description}
                for p in kit.store.purposes()]
    finally:
        kit.close()
    if as_json:
        print_json(rows)
        return
    table = Table("id", "name", "kind", "description")
    for r in rows:
        table.add_row(str(r["id"]), str(r["name"]), str(r["kind"]), str(r["description"]))
    Console().print(table)


@topics_app.command("add")
def topics_add(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    purpose: str = typer.Option(..., "--purpose"),
    description: str = typer.Option("", "--description"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Add a topic to a purpose."""
    kit = open_kit(ctx)
    try:
        p = kit.store.purpose(purpose)
        t = kit.store.add_topic(p.id, name, description, at=kit.clock())
    finally:
        kit.close()
    if as_json:
        print_json({"id": t.id, "name": t.name, "purpose": p.name, "description": t.description})
    else:
        typer.echo(f"topic {t.name} in {p.name} id={t.id}")


@topics_app.command("list")
def topics_list(
    ctx: typer.Context,
    purpose: str | None = typer.Option(None, "--purpose"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List topics (of one purpose, or all)."""
    kit = open_kit(ctx)
    try:
        pid = kit.store.purpose(purpose).id if purpose else None
        names = {p.id: p.name for p in kit.store.purposes()}
        rows = [{"id": t.id, "name": t.name, "purpose": names.get(t.purpose_id), "description": t.description}
                for t in kit.store.topics(pid)]
    finally:
        kit.close()
    if as_json:
        print_json(rows)
        return
    table = Table("id", "name", "purpose", "description")
    for r in rows:
        table.add_row(str(r["id"]), str(r["name"]), str(r["purpose"]), str(r["description"]))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(consent_app, name="consent")
    app.add_typer(purposes_app, name="purposes")
    app.add_typer(topics_app, name="topics")
