"""Endpoint filters and the event payload (pure)."""

from __future__ import annotations

import json

import pytest

from unsubkit.consent.model import Action, Event, Mechanism, Scope
from unsubkit.errors import WebhookError
from unsubkit.hooks import Endpoint, EventFacts, event_payload
from unsubkit.hooks.model import encode_payload, message_id, validate_event_types


def facts(action: Action = Action.OPT_OUT, brand: str = "default", purpose: str | None = "marketing",
          scope: Scope | None = None, replaced_by: str | None = None) -> EventFacts:
    ev = Event(id=7, address="jane@example.com", scope=scope or Scope.purpose(1), action=action,
               source="Email - list-unsubscribe", reason="Opt-out - One-click unsubscribe",
               mechanism=Mechanism.ONE_CLICK, brand=brand, message_id="<m1@example.com>", at=1_767_225_600.25)
    return EventFacts(ev, purpose if ev.scope.purpose_id else None, None, replaced_by)


def test_payload_fields() -> None:
    p = event_payload(facts())
    assert p == {
        "type": "consent.opted_out",
        "event_id": 7,
        "time": "2026-01-01T00:00:00.250000Z",
        "address": "jane@example.com",
        "scope": "purpose",
        "purpose": "marketing",
        "purpose_id": 1,
        "topic": None,
        "topic_id": None,
        "brand": "default",
        "action": "opt-out",
        "source": "Email - list-unsubscribe",
        "reason": "Opt-out - One-click unsubscribe",
        "mechanism": "one-click",
        "message_id": "<m1@example.com>",
        "contact_id": None,
        "changed": True,
        "default_action": "applied",
        "handler": None,
        "suspected_automated": False,
    }
    assert event_payload(facts(Action.OPT_IN))["type"] == "consent.opted_in"
    replaced = event_payload(facts(replaced_by="crm"))
    assert (replaced["default_action"], replaced["handler"]) == ("replaced", "crm")
    assert json.loads(encode_payload(p)) == p


def test_empty_filters_accept_everything() -> None:
    ep = Endpoint("ep_1", "https://x")
    assert ep.accepts(facts()) and ep.accepts(facts(Action.OPT_IN, brand="acme", purpose="news"))


def test_filters_by_brand_purpose_and_type() -> None:
    ep = Endpoint("ep_1", "https://x", brands=("acme",), purposes=("marketing",), event_types=("consent.opted_out",))
    assert ep.accepts(facts(brand="acme"))
    assert not ep.accepts(facts(brand="default"))
    assert not ep.accepts(facts(brand="acme", purpose="news"))
    assert not ep.accepts(facts(Action.OPT_IN, brand="acme"))
    # A bulk-email opt-out covers every commercial purpose: it passes purpose filters.
    assert ep.accepts(facts(brand="acme", scope=Scope.bulk_email()))


def test_secrets_include_previous_only_during_grace() -> None:
    ep = Endpoint("ep_1", "https://x", secret="whsec_new", previous_secret="whsec_old", previous_secret_until=100.0)
    assert ep.secrets(50.0) == ["whsec_new", "whsec_old"]
    assert ep.secrets(100.0) == ["whsec_new"]
    assert "whsec" not in repr(ep)


def test_message_id_is_stable_per_event_and_target() -> None:
    assert message_id(7, "ep_1") == message_id(7, "ep_1") != message_id(7, "ep_2")


def test_event_types_are_validated() -> None:
    assert validate_event_types(["consent.opted_in", "consent.opted_in"]) == ["consent.opted_in"]
    with pytest.raises(WebhookError):
        validate_event_types(["consent.deleted"])
