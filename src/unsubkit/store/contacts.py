"""Contacts in the store: create, link and unlink addresses, delete (called by :class:`SQLStore`).

Every function runs inside the caller's transaction. When an address leaves a contact, the
contact's opt-outs are first *carried over* onto the address as ordinary recorded events (level
channel, source ``Contact management``), so the address stays exactly as blocked as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..consent.contacts import Contact, ContactRef
from ..consent.history import CONTACT
from ..consent.model import Action, ConsentChange, ConsentLevel, Event, Mechanism, Reason, Scope
from ..errors import ConsentError, UnknownContact
from .rows import scope_of_row
from .schema import consent_state, contact_points, contacts

if TYPE_CHECKING:
    from .sql import SQLStore

__all__ = [
    "add_contact",
    "carry_over",
    "contact_opt_outs",
    "delete",
    "find_contact",
    "link",
    "list_contacts",
    "unlink",
]


def _addresses(conn: Connection, contact_id: int) -> tuple[str, ...]:
    q = (select(contact_points.c.address).where(contact_points.c.contact_id == contact_id)
         .order_by(contact_points.c.id))
    return tuple(r.address for r in conn.execute(q))


def _contact(conn: Connection, r: Any) -> Contact:
    return Contact(r.id, r.external_id or r.former_external_id, r.created_at, r.deleted_at,
                   _addresses(conn, r.id))


def find_contact(conn: Connection, ref: ContactRef, *, include_deleted: bool = True) -> Contact:
    q = select(contacts)
    if ref.id is not None:
        q = q.where(contacts.c.id == ref.id)
    elif include_deleted:
        q = q.where(or_(contacts.c.external_id == ref.external_id,
                        contacts.c.former_external_id == ref.external_id))
    else:
        q = q.where(contacts.c.external_id == ref.external_id)
    if not include_deleted:
        q = q.where(contacts.c.deleted_at.is_(None))
    # A deleted contact may have had the external id of a newer live one: prefer the live one,
    # then the most recent.
    rows = conn.execute(q.order_by(contacts.c.deleted_at.is_not(None), contacts.c.id.desc())).all()
    if not rows:
        raise UnknownContact(f"unknown contact {ref}")
    return _contact(conn, rows[0])


def _live(conn: Connection, ref: ContactRef) -> Contact:
    contact = find_contact(conn, ref)
    if contact.deleted:
        raise ConsentError(f"contact {ref} was deleted")
    return contact


def add_contact(
    store: SQLStore, conn: Connection, external_id: str | None, addresses: list[str], *,
    at: float, source: str, mechanism: Mechanism,
) -> Contact:
    ext = external_id.strip() if external_id else None
    if ext is not None:
        clash = conn.execute(select(contacts.c.id).where(contacts.c.external_id == ext)).first()
        if clash is not None:
            raise ConsentError(f"a contact with external id {ext!r} already exists (#{clash.id})")
    try:
        with conn.begin_nested():
            cid = conn.execute(
                contacts.insert().values(external_id=ext, created_at=at).returning(contacts.c.id)
            ).scalar_one()
    except IntegrityError:
        raise ConsentError(f"a contact with external id {ext!r} already exists") from None
    for address in addresses:
        _attach(store, conn, cid, address, move=False, at=at, source=source, mechanism=mechanism)
    return find_contact(conn, ContactRef(id=cid))


def contact_opt_outs(conn: Connection, contact_id: int) -> list[Scope]:
    """Scopes currently opted out on the contact itself (identity level, bulk email too)."""
    rows = conn.execute(
        select(consent_state.c.scope_kind, consent_state.c.purpose_id, consent_state.c.topic_id)
        .where(consent_state.c.subject_type == CONTACT, consent_state.c.subject_id == contact_id,
               consent_state.c.opted_out.is_(True))
        .order_by(consent_state.c.id)
    ).all()
    return [scope_of_row(r.scope_kind, r.purpose_id, r.topic_id) for r in rows]


def carry_over(
    store: SQLStore, conn: Connection, contact_id: int, address: str, *, at: float, source: str,
    mechanism: Mechanism,
) -> list[Event]:
    """Record the contact's current opt-outs on ``address`` itself (which must already be
    detached from the contact, so that they land on the address)."""
    out: list[Event] = []
    for scope in contact_opt_outs(conn, contact_id):
        change = ConsentChange(
            address=address,
            scope=scope,
            action=Action.OPT_OUT,
            source=source,
            reason=Reason.carried_over(contact_id),
            mechanism=mechanism,
            level=ConsentLevel.CHANNEL,
        )
        ev = store._record_one(conn, change, at)
        if ev.changed:
            out.append(ev)
    return out


def _set_owner(conn: Connection, point_id: int, contact_id: int | None) -> None:
    conn.execute(update(contact_points).where(contact_points.c.id == point_id)
                 .values(contact_id=contact_id))


def _attach(
    store: SQLStore, conn: Connection, contact_id: int, address: str, *, move: bool, at: float,
    source: str, mechanism: Mechanism,
) -> list[Event]:
    point_id, owner = store._point(conn, address, at)
    if owner == contact_id:
        return []
    carried: list[Event] = []
    if owner is not None:
        if not move:
            raise ConsentError(
                f"{address} already belongs to contact #{owner} (move it with --move)"
            )
        _set_owner(conn, point_id, None)
        carried = carry_over(store, conn, owner, address, at=at, source=source, mechanism=mechanism)
    _set_owner(conn, point_id, contact_id)
    return carried


def link(
    store: SQLStore, conn: Connection, ref: ContactRef, address: str, *, move: bool, at: float,
    source: str, mechanism: Mechanism,
) -> tuple[Contact, list[Event]]:
    contact = _live(conn, ref)
    carried = _attach(store, conn, contact.id, address, move=move, at=at, source=source,
                      mechanism=mechanism)
    return find_contact(conn, ContactRef(id=contact.id)), carried


def unlink(
    store: SQLStore, conn: Connection, address: str, *, at: float, source: str, mechanism: Mechanism,
) -> tuple[int, list[Event]]:
    row = conn.execute(
        select(contact_points.c.id, contact_points.c.contact_id)
        .where(contact_points.c.address == address)
    ).first()
    if row is None or row.contact_id is None:
        raise ConsentError(f"{address} does not belong to any contact")
    _set_owner(conn, row.id, None)
    carried = carry_over(store, conn, row.contact_id, address, at=at, source=source,
                         mechanism=mechanism)
    return row.contact_id, carried


def delete(
    store: SQLStore, conn: Connection, ref: ContactRef, *, at: float, source: str,
    mechanism: Mechanism,
) -> tuple[Contact, list[Event]]:
    """Soft-delete: the contact row stays (events refer to it); its addresses are detached with
    their consent carried over, so a later opt-out or send works on the address alone."""
    contact = _live(conn, ref)
    carried: list[Event] = []
    points = conn.execute(
        select(contact_points.c.id, contact_points.c.address)
        .where(contact_points.c.contact_id == contact.id).order_by(contact_points.c.id)
    ).all()
    for p in points:
        _set_owner(conn, p.id, None)
        carried += carry_over(store, conn, contact.id, p.address, at=at, source=source,
                              mechanism=mechanism)
    # The external id is freed for a future contact (the CRM may re-create the person) and kept
    # as former_external_id for lookups and audit.
    conn.execute(update(contacts).where(contacts.c.id == contact.id).values(
        deleted_at=at, external_id=None, former_external_id=contact.external_id,
    ))
    deleted = Contact(contact.id, contact.external_id, contact.created_at, at, contact.addresses)
    return deleted, carried


def list_contacts(conn: Connection, *, include_deleted: bool, limit: int | None) -> list[Contact]:
    q = select(contacts).order_by(contacts.c.id)
    if not include_deleted:
        q = q.where(contacts.c.deleted_at.is_(None))
    if limit is not None:
        q = q.limit(limit)
    return [_contact(conn, r) for r in conn.execute(q).all()]
