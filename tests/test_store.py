"""The consent store and the service facade, on SQLite and on PostgreSQL (``db_url`` fixture)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, text

from unsubkit.clock import FrozenClock
from unsubkit.consent.model import (
    Action,
    ConsentChange,
    Mechanism,
    PurposeKind,
    Reason,
    RequestMeta,
    Scope,
    ScopeKind,
    Source,
)
from unsubkit.errors import AddressError, ConsentError, StoreError, UnknownBrand, UnknownPurpose, UnknownTopic
from unsubkit.service import Unsubkit
from unsubkit.store import SQLStore
from unsubkit.store.schema import consent_state, contact_points, events, outbox
from unsubkit.tokens import Claims

ADDR = "jane@example.com"


def count(store: SQLStore, table: object) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def sql_store(kit: Unsubkit) -> SQLStore:
    assert isinstance(kit.store, SQLStore)
    return kit.store


def opt_out(address: str, purpose_id: int, topic_id: int | None = None, **kw: object) -> ConsentChange:
    return ConsentChange(
        address=address,
        scope=Scope.of(purpose_id, topic_id),
        action=Action.OPT_OUT,
        source=Source.LIST_UNSUBSCRIBE,
        reason=Reason.ONE_CLICK,
        mechanism=Mechanism.ONE_CLICK,
        **kw,  # type: ignore[arg-type]
    )


# -- catalog ---------------------------------------------------------------------------------------


def test_purposes_and_topics(kit: Unsubkit) -> None:
    store = kit.store
    marketing = store.purpose("marketing")
    assert marketing.commercial
    assert store.purpose(marketing.id) == marketing
    assert not store.purpose("transactional").commercial
    news = store.add_purpose("newsletter", PurposeKind.COMMERCIAL, "weekly", at=1.0)
    assert [p.name for p in store.purposes()] == ["marketing", "transactional", "newsletter"]
    assert store.find_purpose(news.id) == news
    assert store.find_purpose(99_999) is None
    with pytest.raises(ConsentError, match="already exists"):
        store.add_purpose("newsletter", PurposeKind.COMMERCIAL)
    with pytest.raises(ConsentError):
        store.add_purpose("   ", PurposeKind.COMMERCIAL)
    assert store.ensure_purpose("newsletter", PurposeKind.COMMERCIAL) == news
    with pytest.raises(UnknownPurpose):
        store.purpose("nope")

    deals = store.add_topic(marketing.id, "deals")
    tips = store.add_topic(marketing.id, "tips")
    other_deals = store.add_topic(news.id, "deals")  # same name, other purpose: fine
    assert [t.name for t in store.topics(marketing.id)] == ["deals", "tips"]
    assert len(store.topics()) == 3
    assert store.topic(marketing.id, "deals") == deals
    assert store.topic(marketing.id, tips.id) == tips
    assert store.find_topic(other_deals.id) == other_deals
    with pytest.raises(ConsentError, match="already exists"):
        store.add_topic(marketing.id, "deals")
    with pytest.raises(UnknownTopic):
        store.topic(news.id, "tips")
    with pytest.raises(UnknownPurpose):
        store.add_topic(12345, "x")


# -- recording -------------------------------------------------------------------------------------


def test_opt_out_is_recorded_with_its_evidence(kit: Unsubkit) -> None:
    store = sql_store(kit)
    p = store.purpose("marketing")
    meta = RequestMeta(client_ip="203.0.113.9", user_agent="Mozilla/5.0 " + "x" * 600)
    [ev] = store.record([opt_out(ADDR, p.id, message_id="<m1@example.com>", meta=meta, brand="default")], 1000.0)
    assert ev.changed and ev.action is Action.OPT_OUT and ev.at == 1000.0
    assert store.state(ADDR).purposes_out == {p.id}
    [stored] = store.events(ADDR)
    assert stored.id == ev.id
    assert stored.scope == Scope.purpose(p.id)
    assert stored.source == "Email - list-unsubscribe"
    assert stored.reason == "Opt-out - One-click unsubscribe"
    assert stored.mechanism is Mechanism.ONE_CLICK
    assert stored.message_id == "<m1@example.com>"
    assert stored.client_ip == "203.0.113.9"
    assert stored.user_agent is not None and len(stored.user_agent) == 512
    assert count(store, outbox) == 1  # one outbox row per event, same transaction
    assert not kit.can_send(ADDR, "marketing")
    assert kit.can_send("someone.else@example.com", "marketing")


def test_repeat_opt_out_records_an_event_and_changes_nothing(kit: Unsubkit) -> None:
    store = sql_store(kit)
    p = store.purpose("marketing")
    first = store.record([opt_out(ADDR, p.id)], 1.0)[0]
    state_rows = count(store, consent_state)
    second = store.record([opt_out(ADDR, p.id)], 2.0)[0]
    assert first.changed and not second.changed
    assert count(store, consent_state) == state_rows
    assert [e.changed for e in store.events(ADDR)] == [True, False]
    assert store.state(ADDR).purposes_out == {p.id}
    assert count(store, outbox) == 2


def test_resubscribe_reverses_an_opt_out(kit: Unsubkit) -> None:
    ev = kit.unsubscribe(ADDR, "marketing")
    assert ev.changed and not kit.can_send(ADDR, "marketing")
    back = kit.resubscribe(ADDR, "marketing")
    assert back.changed and back.action is Action.OPT_IN and back.reason == Reason.RESUBSCRIBE
    assert kit.can_send(ADDR, "marketing")
    again = kit.resubscribe(ADDR, "marketing")
    assert not again.changed
    assert [e.action for e in kit.store.events(ADDR)] == [Action.OPT_OUT, Action.OPT_IN, Action.OPT_IN]


def test_opt_in_of_a_never_seen_address_changes_nothing(kit: Unsubkit) -> None:
    ev = kit.resubscribe("new@example.com", "marketing")
    assert not ev.changed
    assert kit.can_send("new@example.com", "marketing")


def test_topic_and_purpose_scopes(kit: Unsubkit) -> None:
    marketing = kit.store.purpose("marketing")
    deals = kit.store.add_topic(marketing.id, "deals")
    kit.store.add_topic(marketing.id, "tips")
    kit.unsubscribe(ADDR, "marketing", "deals")
    assert kit.can_send(ADDR, "marketing")  # leaving a topic leaves the purpose
    assert kit.can_send(ADDR, "marketing", "tips")
    assert not kit.can_send(ADDR, "marketing", "deals")
    assert kit.store.state(ADDR).topics_out == {deals.id}
    kit.unsubscribe(ADDR, "marketing")
    assert not kit.can_send(ADDR, "marketing", "tips")  # leaving the purpose covers every topic
    kit.resubscribe(ADDR, "marketing")
    assert kit.can_send(ADDR, "marketing", "tips")
    assert not kit.can_send(ADDR, "marketing", "deals")


def test_bulk_email_blocks_commercial_never_transactional(kit: Unsubkit) -> None:
    kit.store.add_purpose("product-news", PurposeKind.COMMERCIAL)
    ev = kit.unsubscribe(ADDR, None)
    assert ev.scope.kind is ScopeKind.BULK_EMAIL
    assert not kit.can_send(ADDR, "marketing")
    assert not kit.can_send(ADDR, "product-news")
    decision = kit.can_send(ADDR, "transactional")
    assert decision and decision.reason == "transactional"


def test_marketing_opt_out_never_blocks_transactional(kit: Unsubkit) -> None:
    kit.unsubscribe(ADDR, "marketing")
    kit.unsubscribe(ADDR, "transactional")  # even an explicit one is recorded but never blocks
    assert kit.can_send(ADDR, "transactional")


def test_addresses_are_normalized(kit: Unsubkit) -> None:
    kit.unsubscribe("  Jane@EXAMPLE.com ", "marketing")
    assert not kit.can_send("jane@example.com", "marketing")
    assert not kit.can_send("JANE@example.COM", "marketing")
    assert count(sql_store(kit), contact_points) == 1
    with pytest.raises(AddressError):
        kit.unsubscribe("not an address", "marketing")
    with pytest.raises(UnknownPurpose):
        kit.unsubscribe(ADDR, "nope")


def test_one_record_call_is_one_transaction(kit: Unsubkit) -> None:
    store = sql_store(kit)
    p = store.purpose("marketing")
    changes = [opt_out(f"u{i}@example.com", p.id) for i in range(50)] + [opt_out("u0@example.com", p.id)]
    evs = store.record(changes, 5.0)
    assert len(evs) == 51
    assert [e.changed for e in evs] == [True] * 50 + [False]  # later changes see earlier ones
    assert count(store, events) == 51
    assert store.record([], 6.0) == []


def test_concurrent_first_opt_outs_of_one_address(kit: Unsubkit) -> None:
    """Several writers racing on a new address create one contact point and one state row."""
    store = sql_store(kit)
    p = store.purpose("marketing")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: store.record([opt_out("race@example.com", p.id)], float(i)), range(16)))
    assert sum(r[0].changed for r in results) == 1
    assert count(store, contact_points) == 1
    assert count(store, consent_state) == 1
    assert len(store.events("race@example.com")) == 16


# -- tokens through the service -------------------------------------------------------------------


def test_unknown_purpose_id_in_a_token_still_opts_out(kit: Unsubkit) -> None:
    """A purpose deleted (or never known here) after sending: the token's id is still honoured."""
    claims = Claims(address=ADDR, purpose_id=424242, message_id="<gone@example.com>")
    token = kit.codec.seal(claims)
    opened = kit.open_token(token)
    changes = kit.changes_for_token(opened, mechanism=Mechanism.ONE_CLICK)
    [ev] = kit.record(changes)
    assert ev.changed and ev.scope == Scope.purpose(424242)
    assert 424242 in kit.store.state(ADDR).purposes_out
    with pytest.raises(UnknownPurpose):
        kit.purpose_name(424242)
    report = kit.status(ADDR)  # the report still works; the event is listed
    assert [e.scope.purpose_id for e in report.events] == [424242]
    assert kit.can_send(ADDR, "marketing")  # and other purposes are untouched


def test_changes_for_token_by_mechanism(kit: Unsubkit) -> None:
    p = kit.store.purpose("marketing")
    claims = Claims(address=ADDR, purpose_id=p.id, brand="removed-brand", issued_at=1)
    expected = {
        Mechanism.ONE_CLICK: (Source.LIST_UNSUBSCRIBE, Reason.ONE_CLICK),
        Mechanism.LANDING_PAGE: (Source.LIST_UNSUBSCRIBE, Reason.LANDING_PAGE),
        Mechanism.MAILTO: (Source.MAILTO, Reason.MAILTO),
        Mechanism.PREFERENCE_PAGE: (Source.PREFERENCE_CENTER, Reason.PREFERENCE),
    }
    for mechanism, (source, reason) in expected.items():
        [ch] = kit.changes_for_token(claims, mechanism=mechanism)
        assert (ch.source, ch.reason, ch.mechanism) == (source, reason, mechanism)
        assert ch.brand == "removed-brand" and ch.token_issued_at == 1


def test_headers_for_and_back(kit: Unsubkit) -> None:
    result = kit.headers_for("Jane@Example.com", "marketing", message_id="<m@example.com>")
    assert result.headers is not None and result.token and result.url and result.mailto
    assert result.url == f"https://unsub.example.com/u/{result.token}"
    assert result.mailto == f"mailto:unsubscribe+{result.token}@example.com?subject=unsubscribe"
    assert result.body_url == f"https://unsub.example.com/p/{result.token}"
    assert result.headers.list_unsubscribe == f"<{result.url}>, <{result.mailto}>"
    assert result.headers.list_unsubscribe_post == "List-Unsubscribe=One-Click"
    claims = kit.open_token(result.token)
    assert claims.address == ADDR
    assert claims.purpose_id == kit.store.purpose("marketing").id
    assert claims.message_id == "<m@example.com>"
    assert claims.issued_at == int(kit.clock())
    assert set(result.as_json()) == {"headers", "url", "mailto", "body_url", "token"}


def test_transactional_and_disabled_brands_get_no_headers(kit: Unsubkit) -> None:
    tx = kit.headers_for(ADDR, "transactional")
    assert tx.headers is None and tx.token is None and tx.url is None
    settings = kit.settings.model_copy(update={"brands": {"off": kit.settings.brand().model_copy(
        update={"enabled": False})}})
    off = Unsubkit(settings, store=kit.store, ring=kit.codec.ring, clock=kit.clock)
    assert off.headers_for(ADDR, "marketing", brand="off").headers is None
    with pytest.raises(UnknownBrand):
        kit.headers_for(ADDR, "marketing", brand="missing")


def test_status_report(kit: Unsubkit) -> None:
    marketing = kit.store.purpose("marketing")
    kit.store.add_topic(marketing.id, "deals")
    kit.unsubscribe(ADDR, "marketing", "deals")
    report = kit.status(ADDR).as_json()
    assert report["address"] == ADDR
    rows = {(c["purpose"], c["topic"]): c["opted_out"] for c in report["consent"]}
    assert rows == {("marketing", None): False, ("marketing", "deals"): True, ("transactional", None): False}
    assert [e["action"] for e in report["events"]] == ["opt-out"]
    assert report["events"][0]["source"] == "API"


def test_token_expiry_uses_the_service_clock(kit: Unsubkit) -> None:
    assert isinstance(kit.clock, FrozenClock)
    token = kit.headers_for(ADDR, "marketing").token
    assert token
    kit.clock.advance(181 * 86400)
    from unsubkit.errors import ExpiredToken

    with pytest.raises(ExpiredToken):
        kit.open_token(token)


def test_migrate_is_idempotent(kit: Unsubkit) -> None:
    kit.unsubscribe(ADDR, "marketing")
    kit.store.migrate()
    kit.store.migrate()
    assert not kit.can_send(ADDR, "marketing")


def test_a_batch_larger_than_one_multi_row_insert(kit: Unsubkit) -> None:
    """SQLite rows go in multi-row INSERTs of at most 999 variables: a 300-change batch spans
    several statements per table, and every row lands with the right event id."""
    store = sql_store(kit)
    p = store.purpose("marketing")
    changes = [opt_out(f"bulk{i:03d}@example.com", p.id) for i in range(300)]
    evs = store.record(changes, 7.0)
    assert [e.address for e in evs] == [c.address for c in changes]
    assert all(e.changed for e in evs)
    assert [e.id for e in evs] == list(range(evs[0].id, evs[0].id + 300))
    assert count(store, events) == 300
    assert count(store, contact_points) == 300
    assert count(store, consent_state) == 300
    assert count(store, outbox) == 300
    assert [e.id for e in store.events("bulk123@example.com")] == [evs[123].id]
    assert store.record(changes[:3], 8.0)[0].changed is False


def test_values_group_only_splits_plain_one_row_inserts() -> None:
    from unsubkit.store.record import _values_group

    sql = "INSERT INTO t (a, b) VALUES (?, ?) ON CONFLICT (a) DO NOTHING"
    assert _values_group(sql, 2) == ("INSERT INTO t (a, b) VALUES ", "(?, ?)", " ON CONFLICT (a) DO NOTHING")
    assert _values_group("INSERT INTO t (a, b) VALUES (?, CURRENT_TIMESTAMP)", 1)[1] == ""
    assert _values_group("UPDATE t SET a = ?", 1)[1] == ""


def test_driver_errors_of_the_batch_path_become_store_errors(kit: Unsubkit) -> None:
    """The batch path sends its statements to sqlite3 directly on SQLite; whatever fails there
    is still one of ours (StoreError), and the transaction leaves nothing behind."""
    store = sql_store(kit)
    pid = store.purpose("marketing").id
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE webhook_endpoints" + (" CASCADE" if store.dialect == "postgresql" else "")))
    with pytest.raises(StoreError, match="schema is missing"):
        store.record([opt_out(ADDR, pid)], 1.0)
    assert count(store, events) == 0
    assert count(store, contact_points) == 0
