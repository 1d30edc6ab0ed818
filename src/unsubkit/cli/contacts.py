"""``contacts``: identities owning several addresses, and their bulk-email switch."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..address import normalize
from ..clock import to_datetime
from ..consent.contacts import Contact
from ..consent.model import Event, Mechanism, Source
from ..errors import ConsentError, UnknownContact
from ..service import ContactReport, Unsubkit
from .common import open_kit, print_json

__all__ = ["contacts_app", "register"]

contacts_app = typer.Typer(
    help="Contacts (identities) owning several addresses. CONTACT is the numeric id, "
    "ext:EXTERNAL_ID, or (for show) one of its addresses.",
    no_args_is_help=True,
)

# Carried-over opt-outs are recorded with source "Contact management" and mechanism cli.
SRC, MECH = Source.CONTACTS, Mechanism.CLI


def contact_json(c: Contact) -> dict[str, Any]:
    return {"id": c.id, "external_id": c.external_id, "addresses": list(c.addresses),
            "created_at": c.created_at, "deleted_at": c.deleted_at, "deleted": c.deleted}


def _describe(c: Contact) -> str:
    ext = f" ({c.external_id})" if c.external_id else ""
    gone = " [deleted]" if c.deleted else ""
    return f"contact #{c.id}{ext}{gone}: {', '.join(c.addresses) or 'no addresses'}"


def _carried(events: list[Event]) -> None:
    for ev in events:
        typer.echo(f"  kept on {ev.address}: {ev.scope.kind} opt-out ({ev.reason})")


def _resolve(kit: Unsubkit, ref: str) -> str | int:
    if "@" in ref:
        cid = kit.store.contact_of(normalize(ref))
        if cid is None:
            raise UnknownContact(f"{ref} does not belong to any contact")
        return cid
    return ref


@contacts_app.command("add")
def add(
    ctx: typer.Context,
    addresses: list[str] = typer.Argument(None, metavar="[ADDRESS]...", help="Addresses it owns."),
    external_id: str | None = typer.Option(None, "--external-id", help="Your system's id (CRM...)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create a contact, optionally with its addresses."""
    kit = open_kit(ctx)
    try:
        contact = kit.add_contact(addresses or [], external_id=external_id, source=SRC, mechanism=MECH)
    finally:
        kit.close()
    if as_json:
        print_json(contact_json(contact))
    else:
        typer.echo(_describe(contact))


@contacts_app.command("link")
def link(
    ctx: typer.Context,
    contact: str = typer.Argument(..., metavar="CONTACT"),
    addresses: list[str] = typer.Argument(..., metavar="ADDRESS..."),
    move: bool = typer.Option(False, "--move", help="Take addresses from their current contact."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Attach addresses to a contact. Identity-level consent of the contact then applies to them."""
    kit = open_kit(ctx)
    carried: list[Event] = []
    try:
        c = kit.contact(contact)
        for address in addresses:
            c, moved = kit.link(c.id, address, move=move, source=SRC, mechanism=MECH)
            carried += moved
    finally:
        kit.close()
    if as_json:
        print_json({**contact_json(c), "carried_over": len(carried)})
        return
    typer.echo(_describe(c))
    _carried(carried)


@contacts_app.command("unlink")
def unlink(
    ctx: typer.Context,
    addresses: list[str] = typer.Argument(..., metavar="ADDRESS..."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Detach addresses from their contact; the contact's opt-outs stay on them."""
    kit = open_kit(ctx)
    done: list[dict[str, Any]] = []
    carried: list[Event] = []
    try:
        for address in addresses:
            cid, moved = kit.unlink(address, source=SRC, mechanism=MECH)
            carried += moved
            done.append({"address": address, "contact_id": cid, "carried_over": len(moved)})
    finally:
        kit.close()
    if as_json:
        print_json(done)
        return
    for d in done:
        typer.echo(f"{d['address']} unlinked from contact #{d['contact_id']}")
    _carried(carried)


@contacts_app.command("delete")
def delete(
    ctx: typer.Context,
    contact: str = typer.Argument(..., metavar="CONTACT"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Delete a contact. Its addresses keep every opt-out that applied through it."""
    kit = open_kit(ctx)
    try:
        c, carried = kit.delete_contact(contact, source=SRC, mechanism=MECH)
    finally:
        kit.close()
    if as_json:
        print_json({**contact_json(c), "carried_over": len(carried)})
        return
    typer.echo(f"deleted contact #{c.id}; addresses kept with their consent: "
               f"{', '.join(c.addresses) or 'none'}")
    _carried(carried)


@contacts_app.command("bulk-email")
def bulk_email(
    ctx: typer.Context,
    contact: str = typer.Argument(..., metavar="CONTACT"),
    value: str = typer.Argument(..., metavar="allow|do-not-allow"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Set the contact's bulk-email switch; do-not-allow blocks every commercial purpose."""
    choice = value.strip().lower().replace("_", "-")
    if choice not in ("allow", "do-not-allow", "deny"):
        raise ConsentError(f"bulk email is 'allow' or 'do-not-allow', not {value!r}")
    kit = open_kit(ctx)
    try:
        ev = kit.set_bulk_email(_resolve(kit, contact), choice == "allow", source=Source.CLI,
                                mechanism=MECH)
    finally:
        kit.close()
    state = "allow" if choice == "allow" else "do-not-allow"
    if as_json:
        print_json({"contact_id": ev.contact_id, "bulk_email": state.replace("-", "_"),
                    "changed": ev.changed, "event_id": ev.id})
    else:
        typer.echo(f"contact #{ev.contact_id}: bulk email {state}"
                   + ("" if ev.changed else " (unchanged)"))


@contacts_app.command("show")
def show(
    ctx: typer.Context,
    contact: str = typer.Argument(..., metavar="CONTACT"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A contact, its addresses, its bulk-email switch and what is blocked for each address."""
    kit = open_kit(ctx)
    try:
        report: ContactReport = kit.contact_report(_resolve(kit, contact))
        purposes, topics = kit.store.catalog_names()
    finally:
        kit.close()
    if as_json:
        print_json(report.as_json(purposes, topics))
        return
    c = report.contact
    console = Console()
    console.print(_describe(c), highlight=False, markup=False)
    console.print(f"created {to_datetime(c.created_at).isoformat(timespec='seconds')}"
                  + (f", deleted {to_datetime(c.deleted_at).isoformat(timespec='seconds')}"
                     if c.deleted_at is not None else ""), highlight=False)
    console.print(f"bulk email: {'allow' if report.bulk_email_allowed else 'do not allow'}",
                  highlight=False)
    table = Table("address", "purpose", "topic", "blocked because")
    for address, entries in report.address_status.items():
        if not entries:
            table.add_row(address, "", "", "nothing blocked")
        for e in entries:
            table.add_row(address, e.purpose.name, e.topic.name if e.topic else "", e.reason)
    if report.address_status:
        console.print(table)


@contacts_app.command("list")
def list_(
    ctx: typer.Context,
    deleted: bool = typer.Option(False, "--deleted", help="Include deleted contacts."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List contacts."""
    kit = open_kit(ctx)
    try:
        rows = kit.store.list_contacts(include_deleted=deleted)
    finally:
        kit.close()
    if as_json:
        print_json([contact_json(c) for c in rows])
        return
    for c in rows:
        typer.echo(_describe(c))


def register(app: typer.Typer) -> None:
    app.add_typer(contacts_app, name="contacts")
