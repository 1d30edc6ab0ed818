"""``consent``, ``purposes`` and ``topics``."""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, datetime
from typing import Literal

import typer
from rich.console import Console
from rich.table import Table

from ..clock import to_datetime
from ..consent.decisions import ConsentState
from ..consent.model import Event, Mechanism, PurposeKind, Reason, Source
from ..errors import ConsentError, UnsubkitError
from ..lists.reader import ListReader
from ..lists.transfer import export_events, export_state, import_optouts
from ..service import event_json, history_json
from .common import err_console, open_kit, print_json
from .listio import open_input, open_output, progress_bar

__all__ = [
    "consent_app",
    "parse_mechanism",
    "parse_since",
    "purposes_app",
    "register",
    "topics_app",
]

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


_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.I)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float) -> float:
    """``7d``, ``24h``, ``30m`` (ago), or an ISO date/time (UTC unless it says otherwise)."""
    value = text.strip()
    m = _RELATIVE.fullmatch(value)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2).lower()]
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UnsubkitError(
            f"--since {text!r}: use an ISO date/time (2026-01-31, 2026-01-31T12:00Z) or 30m/24h/7d"
        ) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def parse_mechanism(text: str) -> Mechanism:
    wanted = re.sub(r"[\s_-]+", "-", text.strip().lower())
    for m in Mechanism:
        if re.sub(r"[\s_-]+", "-", str(m)) == wanted or m.name.lower().replace("_", "-") == wanted:
            return m
    raise UnsubkitError(
        f"unknown mechanism {text!r} (one of: {', '.join(str(m) for m in Mechanism)})"
    )


def _state_text(st: ConsentState, purposes: dict[int, str], topics: dict[int, str]) -> str:
    parts = [f"purpose {purposes.get(i, f'#{i}')}" for i in sorted(st.purposes_out)]
    parts += [f"topic {topics.get(i, f'#{i}')}" for i in sorted(st.topics_out)]
    if st.bulk_email_blocked:
        parts.insert(0, "bulk email")
    return "blocked: " + ", ".join(parts) if parts else "nothing blocked"


def _scope_text(ev: Event, purposes: dict[int, str], topics: dict[int, str]) -> str:
    if ev.scope.topic_id is not None:
        return f"topic {topics.get(ev.scope.topic_id, f'#{ev.scope.topic_id}')}"
    if ev.scope.purpose_id is not None:
        return f"purpose {purposes.get(ev.scope.purpose_id, f'#{ev.scope.purpose_id}')}"
    return "bulk email"


@consent_app.command("history")
def history(
    ctx: typer.Context,
    address: str = typer.Argument(..., help="Email address."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Every event that shaped an address's consent (its own and its contact's), oldest first,
    with the state after each. An unknown address has an empty history."""
    kit = open_kit(ctx)
    try:
        h = kit.history(address)
        purposes, topics = kit.store.catalog_names()
    finally:
        kit.close()
    if as_json:
        print_json(history_json(h, purposes, topics))
        return
    if not h.entries:
        typer.echo(f"{h.address}: no consent events (nothing blocked)")
        return
    owner = f" (contact #{h.contact_id})" if h.contact_id is not None else ""
    typer.echo(f"{h.address}{owner}")
    for e in h.entries:
        ev = e.event
        via = str(ev.mechanism) if ev.address == h.address else f"{ev.mechanism} via {ev.address}"
        typer.echo(
            f"  {to_datetime(ev.at).isoformat(timespec='seconds')}  #{ev.id}  {ev.action} "
            f"{_scope_text(ev, purposes, topics)} ({ev.level.label} level"
            f"{'' if ev.changed else ', no change'})  {via}  {ev.source}: {ev.reason}"
            f"  -> {_state_text(e.state_after, purposes, topics)}"
        )
    typer.echo(f"now: {_state_text(h.state, purposes, topics)}")


@consent_app.command("events")
def events_cmd(
    ctx: typer.Context,
    since: str | None = typer.Option(None, "--since", help="ISO date/time, or 30m / 24h / 7d ago."),
    mechanism: str | None = typer.Option(
        None, "--mechanism",
        help="one-click, landing-page, mailto, preference-page, api, import, cli.",
    ),
    address: str | None = typer.Option(None, "--address", help="Only events of this address."),
    suspected: bool = typer.Option(False, "--suspected", help="Only suspected automated opt-outs."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many events."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List consent events, oldest first (streamed; the log may be long)."""
    since_ts = parse_since(since, time.time()) if since else None
    mech = parse_mechanism(mechanism) if mechanism else None
    kit = open_kit(ctx)
    try:
        purposes, topics = kit.store.catalog_names()
        stream = kit.events(since=since_ts, mechanism=mech, address=address,
                            suspected=True if suspected else None, limit=limit)
        out = sys.stdout
        n = 0
        if as_json:
            out.write("[")
        for ev in stream:
            if as_json:
                row = {**event_json(ev), "purpose": purposes.get(ev.scope.purpose_id or 0),
                       "topic": topics.get(ev.scope.topic_id or 0)}
                out.write(("\n  " if n == 0 else ",\n  ") + json.dumps(row, ensure_ascii=False))
            else:
                flag = f"  [suspected automated: {ev.evidence}]" if ev.suspected_automated else ""
                out.write(
                    f"{to_datetime(ev.at).isoformat(timespec='seconds')}  #{ev.id}  {ev.action}  "
                    f"{_scope_text(ev, purposes, topics)}  {ev.address}  {ev.mechanism}  "
                    f"{ev.source}  {ev.reason}{flag}\n"
                )
            n += 1
        if as_json:
            out.write("\n]\n" if n else "]\n")
    finally:
        kit.close()
    if not as_json and n == 0:
        err_console.print("no events", highlight=False)


def _change_cmd(
    ctx: typer.Context, opt_out: bool, address: str, purpose: str | None, topic: str | None,
    bulk_email: bool, brand: str, as_json: bool,
) -> None:
    if bulk_email == (purpose is not None):
        raise ConsentError("give either --purpose (with an optional --topic) or --bulk-email")
    if topic is not None and purpose is None:
        raise ConsentError("--topic needs --purpose")
    kit = open_kit(ctx)
    try:
        kit.settings.brand(brand)
        fn = kit.unsubscribe if opt_out else kit.resubscribe
        reason = Reason.CLI if opt_out else Reason.RESUBSCRIBE
        ev = fn(address, purpose, topic, source=Source.CLI, reason=reason,
                mechanism=Mechanism.CLI, brand=brand)
    finally:
        kit.close()
    if as_json:
        print_json(event_json(ev))
    else:
        what = "opted out" if opt_out else "opted in"
        typer.echo(f"{ev.address}: {what} ({ev.scope.kind}, {ev.level.label} level)"
                   + ("" if ev.changed else " - no change"))


@consent_app.command("opt-out")
def opt_out(
    ctx: typer.Context,
    address: str = typer.Argument(...),
    purpose: str | None = typer.Option(None, "--purpose"),
    topic: str | None = typer.Option(None, "--topic"),
    bulk_email: bool = typer.Option(False, "--bulk-email",
                                    help="Set bulk email to do-not-allow (contact level)."),
    brand: str = typer.Option("default", "--brand", help="Its consent level applies."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Record an opt-out (mechanism cli)."""
    _change_cmd(ctx, True, address, purpose, topic, bulk_email, brand, as_json)


@consent_app.command("opt-in")
def opt_in(
    ctx: typer.Context,
    address: str = typer.Argument(...),
    purpose: str | None = typer.Option(None, "--purpose"),
    topic: str | None = typer.Option(None, "--topic"),
    bulk_email: bool = typer.Option(False, "--bulk-email", help="Allow bulk email again."),
    brand: str = typer.Option("default", "--brand"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Record a resubscribe (opt-in) after an opt-out; an event like any other."""
    _change_cmd(ctx, False, address, purpose, topic, bulk_email, brand, as_json)


@consent_app.command("export")
def export(
    ctx: typer.Context,
    fmt: str = typer.Option("csv", "--format", help="csv or jsonl."),
    events: bool = typer.Option(False, "--events", help="The whole event log instead of the state."),
    include_opted_in: bool = typer.Option(False, "--all",
                                          help="State: include rows opted back in."),
    since: str | None = typer.Option(None, "--since", help="Events: only since (ISO or 7d)."),
    mechanism: str | None = typer.Option(None, "--mechanism", help="Events: only this mechanism."),
    output: str | None = typer.Option(None, "--output", "-o", help="File (default: stdout)."),
) -> None:
    """Export the current opt-outs (re-importable: address column `email`) or the event log."""
    if fmt not in ("csv", "jsonl"):
        raise UnsubkitError(f"--format {fmt!r}: use csv or jsonl")
    form: Literal["csv", "jsonl"] = "csv" if fmt == "csv" else "jsonl"
    if not events and (since or mechanism):
        raise UnsubkitError("--since and --mechanism apply to --events")
    since_ts = parse_since(since, time.time()) if since else None
    mech = parse_mechanism(mechanism) if mechanism else None
    kit = open_kit(ctx)
    try:
        with open_output(output) as out:
            if events:
                n = export_events(kit, out, form, since=since_ts, mechanism=mech)
            else:
                n = export_state(kit, out, form, include_opted_in=include_opted_in)
    finally:
        kit.close()
    err_console.print(f"exported {n} {'events' if events else 'rows'}", highlight=False)


@consent_app.command("import")
def import_(
    ctx: typer.Context,
    source_file: str = typer.Argument(..., metavar="FILE",
                                      help="CSV with an email column, or one address a line; - for stdin."),
    purpose: str = typer.Option(..., "--purpose"),
    topic: str | None = typer.Option(None, "--topic"),
    source: str = typer.Option(..., "--source", help="Where the list comes from (sendgrid, ses...)."),
    column: str | None = typer.Option(None, "--column", help="Address column (default: email)."),
    as_json: bool = typer.Option(False, "--json", help="The report as JSON on stdout."),
) -> None:
    """Import a suppression list as opt-outs (source Import). Idempotent: addresses already
    opted out of this scope are skipped; invalid rows are reported with their line and skipped."""
    kit = open_kit(ctx)
    try:
        with open_input(source_file) as (stream, size):
            reader = ListReader(stream, column=column)
            with progress_bar("importing", size) as bar:
                report = import_optouts(kit, reader, purpose, topic, source_name=source,
                                        on_progress=bar)
    finally:
        kit.close()
    if as_json:
        print_json(report.as_json())
        return
    for e in report.errors[:50]:
        err_console.print(f"line {e.line}: {e.value!r}: {e.error}", highlight=False, markup=False,
                          soft_wrap=True)
    if report.invalid > 50:
        err_console.print(f"... and {report.invalid - 50} more invalid rows", highlight=False)
    err_console.print(
        f"imported {report.imported}, skipped {report.skipped} (already opted out), "
        f"invalid {report.invalid}", highlight=False, soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(consent_app, name="consent")
    app.add_typer(purposes_app, name="purposes")
    app.add_typer(topics_app, name="topics")
