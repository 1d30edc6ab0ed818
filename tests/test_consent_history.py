"""History: the current state is a fold over the events. Pure fold tests, and a property test
that the store's materialized state always equals the fold of the address's history, and that the
send-time index agrees with ``can_send`` (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unsubkit.consent.decisions import ConsentState
from unsubkit.consent.history import CONTACT, POINT, fold, history_of, state_of, subjects_of
from unsubkit.consent.model import (
    Action,
    ConsentChange,
    ConsentLevel,
    Event,
    Mechanism,
    PurposeKind,
    Scope,
)
from unsubkit.errors import ConsentError
from unsubkit.service import Unsubkit


def ev(i: int, action: Action, scope: Scope, *, point: int = 1, contact: int | None = None,
       level: ConsentLevel = ConsentLevel.CHANNEL, changed: bool = True) -> Event:
    return Event(id=i, address="a@example.com", scope=scope, action=action, source="API",
                 reason="API", mechanism=Mechanism.API, brand="default", message_id=None,
                 at=float(i), contact_id=contact, changed=changed, level=level, point_id=point)


def test_opt_out_writes_one_row_opt_in_clears_address_and_contact() -> None:
    out_channel = ev(1, Action.OPT_OUT, Scope.purpose(1), contact=9)
    out_identity = ev(2, Action.OPT_OUT, Scope.purpose(1), contact=9, level=ConsentLevel.IDENTITY)
    back = ev(3, Action.OPT_IN, Scope.purpose(1), contact=9)
    assert subjects_of(out_channel) == [(POINT, 1)]
    assert subjects_of(out_identity) == [(CONTACT, 9)]
    assert subjects_of(back) == [(POINT, 1), (CONTACT, 9)]
    rows = fold([out_channel, out_identity])
    assert state_of(rows, 1, 9).purposes_out == {1}
    assert state_of(rows, 2, 9).purposes_out == {1}     # a sibling address of contact 9
    assert state_of(rows, 2, None).purposes_out == set()  # an address of no contact
    assert state_of(fold([out_channel, out_identity, back]), 1, 9) == ConsentState()


def test_unchanged_events_write_nothing() -> None:
    # A brand handler replaced the built-in action: recorded, but changed=False.
    replaced = ev(1, Action.OPT_OUT, Scope.purpose(1), changed=False)
    assert state_of(fold([replaced]), 1, None) == ConsentState()


def test_history_entries_carry_the_state_after_each_event() -> None:
    events = [
        ev(2, Action.OPT_IN, Scope.topic(1, 5)),
        ev(1, Action.OPT_OUT, Scope.topic(1, 5)),
        ev(3, Action.OPT_OUT, Scope.bulk_email(), contact=4, level=ConsentLevel.IDENTITY),
    ]
    h = history_of("a@example.com", 1, 4, events)
    assert [e.event.id for e in h.entries] == [1, 2, 3]
    assert [e.state_after.topics_out for e in h.entries] == [{5}, set(), set()]
    assert h.state.bulk_email_blocked and h.known
    assert not history_of("b@example.com", None, None, []).known


def test_fold_needs_the_contact_point() -> None:
    with pytest.raises(ValueError):
        fold([ev(1, Action.OPT_OUT, Scope.purpose(1), point=None)])  # type: ignore[arg-type]


def test_history_includes_what_siblings_did_to_the_contact(kit: Unsubkit) -> None:
    c = kit.add_contact(["a@example.com", "b@example.com"])
    m = kit.store.purpose("marketing")
    change = ConsentChange(address="a@example.com", scope=Scope.purpose(m.id), action=Action.OPT_OUT,
                           source="API", reason="API", mechanism=Mechanism.API,
                           level=ConsentLevel.IDENTITY)
    kit.record([change])
    assert not kit.can_send("b@example.com", "marketing")
    kit.resubscribe("b@example.com", "marketing")  # lifts the contact's opt-out for both
    for address in ("a@example.com", "b@example.com"):
        h = kit.history(address)
        assert [e.event.action for e in h.entries] == [Action.OPT_OUT, Action.OPT_IN]
        assert h.contact_id == c.id and h.state == kit.store.state(address) == ConsentState()
    # A channel-level opt-out through a sibling is not part of this address's history.
    kit.unsubscribe("b@example.com", "marketing")
    assert len(kit.history("a@example.com").entries) == 2
    assert len(kit.history("b@example.com").entries) == 3


# -- the store agrees with the fold, whatever happens ----------------------------------------

ADDRESSES = ["a@example.com", "b@example.com"]
SCOPES = ["marketing", "news", "bulk"]

# Consent changes are weighted up: they are what the contact operations reshuffle.
KINDS = ["out"] * 3 + ["in"] * 3 + ["contact", "link", "unlink", "delete"]
op = st.tuples(
    st.sampled_from(KINDS),
    st.sampled_from(ADDRESSES),
    st.sampled_from(SCOPES),
    st.sampled_from([ConsentLevel.CHANNEL, ConsentLevel.IDENTITY]),
    st.sampled_from([False, False, False, True]),   # a brand handler replaces the action
    st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=2, unique=True),
    st.integers(0, 3),
)


@pytest.fixture
def scopes(kit: Unsubkit) -> dict[str, Scope]:
    m = kit.store.purpose("marketing")
    p = kit.store.add_purpose("product", PurposeKind.COMMERCIAL)
    news = kit.store.add_topic(m.id, "news")
    return {"marketing": Scope.purpose(m.id), "product": Scope.purpose(p.id),
            "news": Scope.topic(m.id, news.id), "bulk": Scope.bulk_email()}


def apply(kit: Unsubkit, scopes: dict[str, Scope], step: tuple[Any, ...]) -> None:
    kind, address, scope, level, replaced, addresses, index = step
    contacts = [c.id for c in kit.store.list_contacts()]
    try:
        if kind in ("out", "in"):
            kit.record([ConsentChange(
                address=address, scope=scopes[scope],
                action=Action.OPT_OUT if kind == "out" else Action.OPT_IN,
                source="API", reason="API", mechanism=Mechanism.API, level=level,
                replace_with="handler:x" if replaced and kind == "out" else None,
            )])
        elif kind == "contact":
            kit.add_contact(addresses)
        elif kind == "link" and contacts:
            kit.link(contacts[index % len(contacts)], address, move=True)
        elif kind == "unlink":
            kit.unlink(address)
        elif kind == "delete" and contacts:
            kit.delete_contact(contacts[index % len(contacts)])
    except ConsentError:
        pass  # e.g. unlinking an address of no contact, or adding an already owned one


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(op, min_size=5, max_size=30))
def test_store_state_is_the_fold_of_the_history(
    kit: Unsubkit, scopes: dict[str, Scope], steps: list[tuple[Any, ...]]
) -> None:
    for i, step in enumerate(steps):
        apply(kit, scopes, step)
        for address in ADDRESSES:
            assert kit.history(address).state == kit.store.state(address), (address, steps[: i + 1])
    indexes = {
        (p, t): kit.blocked_index(p, t)
        for p, t in (("marketing", None), ("marketing", "news"), ("product", None), ("transactional", None))
    }
    for address in ADDRESSES:
        for (p, t), index in indexes.items():
            assert index.decide(address) == kit.can_send(address, p, t), (address, p, t, steps)
