"""Consent semantics on SQLite and PostgreSQL: scopes, consent levels, the bulk-email switch,
deleted contacts, send-time capture, resubscribe, transactional purposes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import update

from conftest import build_kit
from unsubkit.clock import FrozenClock
from unsubkit.consent.model import Action, ConsentLevel, Mechanism, PurposeKind, ScopeKind
from unsubkit.errors import AddressError, ConsentError, UnknownContact
from unsubkit.service import Unsubkit
from unsubkit.settings import Brand, Settings
from unsubkit.store.schema import contact_points, purposes, topics


@pytest.fixture
def catalog(kit: Unsubkit) -> dict[str, Any]:
    store = kit.store
    m = store.purpose("marketing")
    news = store.add_topic(m.id, "news")
    offers = store.add_topic(m.id, "offers")
    product = store.add_purpose("product", PurposeKind.COMMERCIAL)
    tips = store.add_topic(product.id, "tips")
    return {"marketing": m, "news": news, "offers": offers, "product": product, "tips": tips}


def allowed(kit: Unsubkit, address: str, purpose: str, topic: str | None = None) -> bool:
    return kit.can_send(address, purpose, topic).allowed


def one_click(kit: Unsubkit, token: str) -> list[Any]:
    """Exactly what ``POST /u/{token}`` records."""
    claims = kit.open_token(token)
    return kit.record(kit.changes_for_token(claims, mechanism=Mechanism.ONE_CLICK))


def identity_kit(make_settings: Callable[..., Settings], clock: FrozenClock, **brand: Any) -> Unsubkit:
    settings = make_settings(brands={"default": Brand(consent_level="identity", **brand)})
    return build_kit(settings, clock)


# -- scopes -----------------------------------------------------------------------------------


def test_topic_opt_out_blocks_that_topic_only(kit: Unsubkit, catalog: dict[str, Any]) -> None:
    kit.unsubscribe("jane@example.com", "marketing", "news")
    assert not allowed(kit, "jane@example.com", "marketing", "news")
    assert allowed(kit, "jane@example.com", "marketing")
    assert allowed(kit, "jane@example.com", "marketing", "offers")
    assert allowed(kit, "jane@example.com", "product", "tips")


def test_purpose_opt_out_blocks_purpose_and_every_topic(kit: Unsubkit, catalog: dict[str, Any]) -> None:
    token = kit.headers_for("jane@example.com", "marketing").token
    assert token is not None
    one_click(kit, token)
    assert not allowed(kit, "jane@example.com", "marketing")
    assert not allowed(kit, "jane@example.com", "marketing", "news")
    assert not allowed(kit, "jane@example.com", "marketing", "offers")
    assert allowed(kit, "jane@example.com", "product")
    assert allowed(kit, "jane@example.com", "product", "tips")


def test_transactional_never_blocked_and_never_gets_headers(kit: Unsubkit, catalog: dict[str, Any]) -> None:
    kit.unsubscribe("jane@example.com", "marketing")
    kit.unsubscribe("jane@example.com", None)  # bulk email: do not allow
    d = kit.can_send("jane@example.com", "transactional")
    assert d.allowed and d.reason == "transactional"
    assert not allowed(kit, "jane@example.com", "product")
    assert kit.headers_for("jane@example.com", "transactional").headers is None
    assert kit.blocked_index("transactional").decide("jane@example.com").allowed


def test_unknown_and_repeated_addresses_are_fine(kit: Unsubkit, catalog: dict[str, Any]) -> None:
    assert allowed(kit, "never@example.com", "marketing")
    assert kit.history("never@example.com").entries == []
    first = kit.unsubscribe("jane@example.com", "marketing")
    again = kit.unsubscribe("JANE@Example.COM", "marketing")
    assert first.changed and not again.changed
    assert [e.event.id for e in kit.history("jane@example.com").entries] == [first.id, again.id]


def test_invalid_address_is_an_error_and_never_stored(kit: Unsubkit, catalog: dict[str, Any]) -> None:
    for bad in ("not-an-address", "a@b", "jane@example..com", "", "jane@localhost"):
        with pytest.raises(AddressError):
            kit.unsubscribe(bad, "marketing")
    with kit.store.engine.connect() as conn:  # type: ignore[attr-defined]
        assert conn.execute(contact_points.select()).all() == []


def test_addresses_are_normalized_once(kit: Unsubkit, catalog: dict[str, Any]) -> None:
    kit.unsubscribe("Jane.Doe+News@EXAMPLE.com", "marketing")
    assert not allowed(kit, "jane.doe+news@example.com", "marketing")
    # No provider-specific rewriting: dots and +tags make different addresses.
    assert allowed(kit, "janedoe@example.com", "marketing")
    assert allowed(kit, "jane.doe@example.com", "marketing")
    kit.unsubscribe("anna@bücher.example", "marketing")
    assert not allowed(kit, "ANNA@xn--bcher-kva.example", "marketing")


# -- history and resubscribe ------------------------------------------------------------------


def test_resubscribe_is_an_event_and_state_follows_the_log(kit: Unsubkit, catalog: dict[str, Any],
                                                         clock: FrozenClock) -> None:
    out = kit.unsubscribe("jane@example.com", "marketing", "news")
    clock.advance(60)
    back = kit.resubscribe("jane@example.com", "marketing", "news")
    assert back.action is Action.OPT_IN and back.changed
    assert allowed(kit, "jane@example.com", "marketing", "news")
    clock.advance(60)
    kit.unsubscribe("jane@example.com", "marketing", "news")
    h = kit.history("jane@example.com")
    assert [e.event.action for e in h.entries] == [Action.OPT_OUT, Action.OPT_IN, Action.OPT_OUT]
    assert [bool(e.state_after.topics_out) for e in h.entries] == [True, False, True]
    assert h.entries[0].event.id == out.id
    assert h.state == kit.store.state("jane@example.com")
    # Resubscribing to a topic does not lift a purpose-level opt-out.
    kit.unsubscribe("jane@example.com", "marketing")
    kit.resubscribe("jane@example.com", "marketing", "news")
    assert not allowed(kit, "jane@example.com", "marketing", "news")


# -- consent levels ---------------------------------------------------------------------------


def test_channel_level_opt_out_stays_on_the_address(kit: Unsubkit, catalog: dict[str, Any]) -> None:
    c = kit.add_contact(["jane@example.com", "jane@work.example"])
    token = kit.headers_for("jane@example.com", "marketing").token
    assert token is not None and kit.open_token(token).level is ConsentLevel.CHANNEL
    [ev] = one_click(kit, token)
    assert ev.level is ConsentLevel.CHANNEL and ev.contact_id == c.id
    assert not allowed(kit, "jane@example.com", "marketing")
    assert allowed(kit, "jane@work.example", "marketing")


def test_identity_level_opt_out_applies_to_every_address_of_the_contact(
    make_settings: Callable[..., Settings], clock: FrozenClock
) -> None:
    kit = identity_kit(make_settings, clock)
    try:
        c = kit.add_contact(["jane@example.com", "jane@work.example"])
        result = kit.headers_for("jane@work.example", "marketing")
        assert result.token is not None
        claims = kit.open_token(result.token)
        assert claims.level is ConsentLevel.IDENTITY and claims.contact_id == c.id
        [ev] = one_click(kit, result.token)
        assert ev.level is ConsentLevel.IDENTITY and ev.changed
        assert not allowed(kit, "jane@example.com", "marketing")
        assert not allowed(kit, "jane@work.example", "marketing")
        # An address linked later joins the contact's consent.
        kit.link(c.id, "jane@home.example")
        assert not allowed(kit, "jane@home.example", "marketing")
        # The sibling's history shows the event recorded through the other address.
        h = kit.history("jane@example.com")
        assert [e.event.address for e in h.entries] == ["jane@work.example"]
        # Resubscribing through any address lifts the contact's opt-out.
        kit.resubscribe("jane@home.example", "marketing")
        assert allowed(kit, "jane@example.com", "marketing")
        # An address without a contact falls back to channel level.
        t = kit.headers_for("solo@example.com", "marketing").token
        assert t is not None and kit.open_token(t).contact_id is None
        [solo] = one_click(kit, t)
        assert solo.level is ConsentLevel.CHANNEL
        assert not allowed(kit, "solo@example.com", "marketing")
    finally:
        kit.close()


# -- bulk email -------------------------------------------------------------------------------


def test_bulk_email_switch_blocks_every_commercial_purpose_of_the_contact(
    kit: Unsubkit, catalog: dict[str, Any]
) -> None:
    c = kit.add_contact(["jane@example.com", "jane@work.example"], external_id="crm-7")
    ev = kit.set_bulk_email("ext:crm-7", False)
    assert ev.scope.kind is ScopeKind.BULK_EMAIL and ev.level is ConsentLevel.IDENTITY
    for address in ("jane@example.com", "jane@work.example"):
        for purpose, topic in (("marketing", None), ("marketing", "news"), ("product", "tips")):
            d = kit.can_send(address, purpose, topic)
            assert not d.allowed and d.reason == "bulk email not allowed"
        assert allowed(kit, address, "transactional")
    assert allowed(kit, "other@example.com", "marketing")
    report = kit.contact_report(c.id)
    assert not report.bulk_email_allowed
    kit.set_bulk_email(c.id, True)
    assert allowed(kit, "jane@work.example", "product", "tips")
    assert kit.contact_report(c.id).bulk_email_allowed


def test_bulk_email_switch_needs_an_address(kit: Unsubkit) -> None:
    c = kit.add_contact([])
    with pytest.raises(ConsentError, match="no address"):
        kit.set_bulk_email(c.id, False)


def test_one_click_sets_bulk_email_when_the_brand_asks(
    make_settings: Callable[..., Settings], clock: FrozenClock
) -> None:
    kit = identity_kit(make_settings, clock, one_click_sets_bulk_email=True)
    try:
        product = kit.store.add_purpose("product", PurposeKind.COMMERCIAL)
        kit.add_contact(["jane@example.com", "jane@work.example"])
        token = kit.headers_for("jane@example.com", "marketing").token
        assert token is not None
        events = one_click(kit, token)
        assert [e.scope.kind for e in events] == [ScopeKind.PURPOSE, ScopeKind.BULK_EMAIL]
        assert not allowed(kit, "jane@work.example", product.name)
        assert allowed(kit, "jane@work.example", "transactional")
        # The landing page button is a deliberate choice of one list, not the profile switch.
        t2 = kit.headers_for("solo@example.com", "marketing").token
        assert t2 is not None
        claims = kit.open_token(t2)
        page = kit.record(kit.changes_for_token(claims, mechanism=Mechanism.LANDING_PAGE))
        assert [e.scope.kind for e in page] == [ScopeKind.PURPOSE]
    finally:
        kit.close()


# -- deleted contacts -------------------------------------------------------------------------


def test_deleting_a_contact_keeps_its_addresses_consent(
    make_settings: Callable[..., Settings], clock: FrozenClock
) -> None:
    kit = identity_kit(make_settings, clock)
    try:
        kit.store.add_topic(kit.store.purpose("marketing").id, "news")
        c = kit.add_contact(["jane@example.com", "jane@work.example"], external_id="crm-1")
        old = kit.headers_for("jane@work.example", "marketing", "news").token
        assert old is not None and kit.open_token(old).contact_id == c.id
        kit.unsubscribe("jane@example.com", "marketing")  # identity level: the whole contact
        kit.set_bulk_email(c.id, False)
        deleted, carried = kit.delete_contact("ext:crm-1")
        assert deleted.deleted
        assert {(e.address, e.scope.kind) for e in carried} == {
            ("jane@example.com", ScopeKind.PURPOSE), ("jane@example.com", ScopeKind.BULK_EMAIL),
            ("jane@work.example", ScopeKind.PURPOSE), ("jane@work.example", ScopeKind.BULK_EMAIL),
        }
        assert all(e.reason == f"Carried over from contact #{c.id}" for e in carried)
        for address in ("jane@example.com", "jane@work.example"):
            assert kit.store.contact_of(address) is None
            d = kit.can_send(address, "marketing")
            assert not d.allowed
        with pytest.raises(ConsentError, match="deleted"):
            kit.set_bulk_email(c.id, True)
        # The contact is gone for linking, but can still be shown; its external id is free.
        with pytest.raises(ConsentError, match="deleted"):
            kit.link(c.id, "new@example.com")
        assert kit.contact(c.id).external_id == "crm-1"
        again = kit.add_contact(["fresh@example.com"], external_id="crm-1")
        assert again.id != c.id and kit.contact("ext:crm-1").id == again.id
        # A one-click on an old message (token naming the deleted contact) still opts the
        # address out, on the address itself.
        kit.resubscribe("jane@work.example", "marketing")
        kit.resubscribe("jane@work.example", None)
        assert allowed(kit, "jane@work.example", "marketing", "news")
        events = one_click(kit, old)
        assert events[0].changed and events[0].level is ConsentLevel.CHANNEL
        assert not allowed(kit, "jane@work.example", "marketing", "news")
        assert allowed(kit, "fresh@example.com", "marketing", "news")
    finally:
        kit.close()


def test_moving_and_unlinking_addresses_carries_consent(kit: Unsubkit, catalog: dict[str, Any]) -> None:
    a = kit.add_contact(["jane@example.com"])
    b = kit.add_contact(["john@example.com"])
    kit.set_bulk_email(a.id, False)
    with pytest.raises(ConsentError, match="--move"):
        kit.link(b.id, "jane@example.com")
    contact, carried = kit.link(b.id, "jane@example.com", move=True)
    assert set(contact.addresses) == {"john@example.com", "jane@example.com"}
    assert [e.scope.kind for e in carried] == [ScopeKind.BULK_EMAIL]
    # Jane keeps her block; John is not touched by Jane's old contact's switch.
    assert not allowed(kit, "jane@example.com", "marketing")
    assert allowed(kit, "john@example.com", "marketing")
    cid, carried = kit.unlink("jane@example.com")
    assert cid == b.id and carried == []
    with pytest.raises(ConsentError, match="does not belong"):
        kit.unlink("jane@example.com")
    with pytest.raises(UnknownContact):
        kit.link(999, "x@example.com")
    kit.add_contact([], external_id="dup")
    with pytest.raises(ConsentError, match="already exists"):
        kit.add_contact([], external_id="dup")


# -- send-time capture ------------------------------------------------------------------------


def test_token_ids_are_authoritative_after_rename_move_and_delete(
    kit: Unsubkit, catalog: dict[str, Any]
) -> None:
    news, product = catalog["news"], catalog["product"]
    token = kit.headers_for("jane@example.com", "marketing", "news").token
    assert token is not None
    engine = kit.store.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        # After sending, the topic is renamed and moved to another purpose.
        conn.execute(update(topics).where(topics.c.id == news.id)
                     .values(name="weekly", purpose_id=product.id))
    [ev] = one_click(kit, token)
    assert ev.scope.topic_id == news.id and ev.scope.purpose_id == catalog["marketing"].id
    d = kit.can_send("jane@example.com", "product", "weekly")
    assert not d.allowed and d.reason == "opted out of topic"
    assert kit.blocked_index("product", "weekly").decide("jane@example.com") == d
    assert allowed(kit, "jane@example.com", "product")
    # The whole purpose deleted after sending: its token still opts out that purpose id.
    t2 = kit.headers_for("john@example.com", "product").token
    assert t2 is not None
    with engine.begin() as conn:
        conn.execute(update(purposes).where(purposes.c.id == product.id).values(deleted_at=1.0))
    [ev2] = one_click(kit, t2)
    assert ev2.changed and ev2.scope.purpose_id == product.id
    assert product.id in kit.store.state("john@example.com").purposes_out
