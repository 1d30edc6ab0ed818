"""Contacts (identities) and references to them (pure).

A contact owns zero or more contact points (addresses); an address belongs to at most one live
contact. Consent recorded at *identity* level lives on the contact and applies to every address
it owns at the time of sending; consent at *channel* level lives on the address.

When an address leaves a contact (unlinked, moved to another contact, or the contact deleted),
every opt-out that applied to it through the contact is carried over onto the address itself, as
recorded events: an opt-out never silently disappears because CRM data was reorganised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConsentError

__all__ = ["Contact", "ContactRef", "parse_contact_ref"]


@dataclass(frozen=True, slots=True)
class Contact:
    id: int
    external_id: str | None
    created_at: float
    deleted_at: float | None = None
    addresses: tuple[str, ...] = field(default_factory=tuple)

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True, slots=True)
class ContactRef:
    """A contact named by its numeric id or by the caller's external id."""

    id: int | None = None
    external_id: str | None = None

    def __str__(self) -> str:
        return f"#{self.id}" if self.id is not None else f"ext:{self.external_id}"


def parse_contact_ref(text: str | int) -> ContactRef:
    """``12`` or ``#12`` is an id; ``ext:CRM-0042`` is an external id."""
    if isinstance(text, int):
        return ContactRef(id=text)
    value = text.strip()
    if value.lower().startswith("ext:"):
        ext = value[4:].strip()
        if not ext:
            raise ConsentError("empty external id after 'ext:'")
        return ContactRef(external_id=ext)
    digits = value[1:] if value.startswith("#") else value
    if digits.isascii() and digits.isdigit():
        return ContactRef(id=int(digits))
    raise ConsentError(
        f"not a contact reference: {text!r} (use the numeric id, or ext:EXTERNAL_ID)"
    )
