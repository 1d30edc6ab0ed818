"""Store-level contacts and the 0002_consent migration (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import inspect, select

from unsubkit.consent.contacts import ContactRef, parse_contact_ref
from unsubkit.consent.model import (
    Action,
    ConsentChange,
    ConsentLevel,
    Mechanism,
    PurposeKind,
    Scope,
    ScopeKind,
    Source,
)
from unsubkit.errors import ConsentError, UnknownContact
from unsubkit.store import SQLStore
from unsubkit.store.schema import consent_state, contact_points, contacts, events, outbox

MECH = Mechanism.API
SRC = Source.CONTACTS


@pytest.fixture
def store(db_url: str) -> Iterator[SQLStore]:
    s = SQLStore(db_url)
    s.migrate()
    s.ensure_purpose("marketing", PurposeKind.COMMERCIAL)
    yield s
    s.close()


def opt_out(store: SQLStore, address: str, scope: Scope, level: ConsentLevel, at: float = 1.0) -> None:
    store.record([ConsentChange(address=address, scope=scope, action=Action.OPT_OUT, source="API",
                                reason="API", mechanism=MECH, level=level)], at)


def test_migration_adds_level_and_former_external_id(store: SQLStore) -> None:
    insp = inspect(store.engine)
    assert "level" in {c["name"] for c in insp.get_columns("events")}
    assert "former_external_id" in {c["name"] for c in insp.get_columns("contacts")}
    idx = {i["name"] for i in insp.get_indexes("events")}
    assert {"ix_events_contact_id", "ix_events_contact_point_id"} <= idx
    store.migrate()  # twice is fine


def test_parse_contact_ref() -> None:
    assert parse_contact_ref("12") == ContactRef(id=12)
    assert parse_contact_ref("#12") == ContactRef(id=12)
    assert parse_contact_ref(7) == ContactRef(id=7)
    assert parse_contact_ref("ext:CRM-1") == ContactRef(external_id="CRM-1")
    for bad in ("crm-1", "ext:", "١٢"):
        with pytest.raises(ConsentError):
            parse_contact_ref(bad)


def test_add_find_link_unlink(store: SQLStore) -> None:
    c = store.add_contact("crm-1", ["a@example.com"], at=1.0, source=SRC, mechanism=MECH)
    assert c.addresses == ("a@example.com",) and c.external_id == "crm-1" and not c.deleted
    assert store.find_contact(ContactRef(external_id="crm-1")).id == c.id
    assert store.contact_of("a@example.com") == c.id
    assert store.contact_of("nobody@example.com") is None
    c2, carried = store.link_address(ContactRef(id=c.id), "b@example.com", at=2.0, source=SRC,
                                     mechanism=MECH)
    assert c2.addresses == ("a@example.com", "b@example.com") and carried == []
    # Linking an address the contact already owns changes nothing.
    assert store.link_address(ContactRef(id=c.id), "b@example.com", at=2.0, source=SRC,
                              mechanism=MECH)[0] == c2
    cid, _ = store.unlink_address("b@example.com", at=3.0, source=SRC, mechanism=MECH)
    assert cid == c.id and store.contact_of("b@example.com") is None
    with pytest.raises(UnknownContact):
        store.find_contact(ContactRef(external_id="nope"))
    with pytest.raises(UnknownContact):
        store.find_contact(ContactRef(id=999))
    assert [x.id for x in store.list_contacts()] == [c.id]


def test_carry_over_is_recorded_as_events_with_outbox_rows(store: SQLStore) -> None:
    m = store.purpose("marketing")
    c = store.add_contact(None, ["a@example.com", "b@example.com"], at=1.0, source=SRC, mechanism=MECH)
    opt_out(store, "a@example.com", Scope.purpose(m.id), ConsentLevel.IDENTITY)
    opt_out(store, "b@example.com", Scope.bulk_email(), ConsentLevel.CHANNEL)  # contact-level anyway
    assert {s.kind for s in store.contact_opt_outs(c.id)} == {ScopeKind.PURPOSE, ScopeKind.BULK_EMAIL}
    # b already has its own purpose opt-out: only the bulk switch needs carrying.
    opt_out(store, "b@example.com", Scope.purpose(m.id), ConsentLevel.CHANNEL)
    deleted, carried = store.delete_contact(ContactRef(id=c.id), at=5.0, source=SRC, mechanism=MECH)
    assert deleted.deleted_at == 5.0 and deleted.external_id is None
    assert sorted((e.address, str(e.scope.kind)) for e in carried) == [
        ("a@example.com", "bulk_email"), ("a@example.com", "purpose"), ("b@example.com", "bulk_email"),
    ]
    with store.engine.connect() as conn:
        rows = conn.execute(select(events.c.id, events.c.source, events.c.level, events.c.contact_id)
                            .where(events.c.id.in_([e.id for e in carried]))).all()
        assert {(r.source, r.level, r.contact_id) for r in rows} == {(SRC, "channel", None)}
        boxed = {r.event_id for r in conn.execute(select(outbox.c.event_id))}
        assert {e.id for e in carried} <= boxed
        owners = conn.execute(select(contact_points.c.contact_id)).scalars().all()
        assert owners == [None, None]
        points = conn.execute(select(consent_state.c.subject_type, consent_state.c.scope_kind)
                              .where(consent_state.c.subject_type == "point",
                                     consent_state.c.opted_out.is_(True))).all()
        assert len(points) == 4
    for address in ("a@example.com", "b@example.com"):
        st = store.state(address)
        assert st.bulk_email_blocked and m.id in st.purposes_out


def test_deleted_contact_frees_its_external_id(store: SQLStore) -> None:
    old = store.add_contact("crm-9", [], at=1.0, source=SRC, mechanism=MECH)
    with pytest.raises(ConsentError, match="already exists"):
        store.add_contact("crm-9", [], at=1.0, source=SRC, mechanism=MECH)
    store.delete_contact(ContactRef(external_id="crm-9"), at=2.0, source=SRC, mechanism=MECH)
    # Still found (with its former id) while no live contact has it.
    found = store.find_contact(ContactRef(external_id="crm-9"))
    assert found.id == old.id and found.deleted and found.external_id == "crm-9"
    new = store.add_contact("crm-9", [], at=3.0, source=SRC, mechanism=MECH)
    assert store.find_contact(ContactRef(external_id="crm-9")).id == new.id
    with pytest.raises(UnknownContact):
        store.find_contact(ContactRef(id=old.id), include_deleted=False)
    with pytest.raises(ConsentError, match="deleted"):
        store.delete_contact(ContactRef(id=old.id), at=4.0, source=SRC, mechanism=MECH)
    assert [c.id for c in store.list_contacts(include_deleted=True)] == [old.id, new.id]
    with store.engine.connect() as conn:
        row = conn.execute(select(contacts).where(contacts.c.id == old.id)).one()
        assert row.external_id is None and row.former_external_id == "crm-9"


def test_token_contact_id_does_not_override_current_owner(store: SQLStore) -> None:
    m = store.purpose("marketing")
    a = store.add_contact(None, ["a@example.com"], at=1.0, source=SRC, mechanism=MECH)
    b = store.add_contact(None, ["b@example.com"], at=1.0, source=SRC, mechanism=MECH)
    # A token sealed when a@ belonged to contact b (say): the opt-out follows a@'s contact now.
    [ev] = store.record([ConsentChange(address="a@example.com", scope=Scope.purpose(m.id),
                                       action=Action.OPT_OUT, source="x", reason="x",
                                       mechanism=Mechanism.ONE_CLICK, level=ConsentLevel.IDENTITY,
                                       contact_id=b.id)], 2.0)
    assert ev.contact_id == a.id and ev.level is ConsentLevel.IDENTITY
    assert store.contact_opt_outs(a.id) and not store.contact_opt_outs(b.id)
    assert m.id not in store.state("b@example.com").purposes_out
