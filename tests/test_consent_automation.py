"""Suspected automated opt-outs: flagged with evidence, never blocked or delayed."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import build_kit
from unsubkit.clock import FrozenClock
from unsubkit.consent.automation import DEFAULT_SCANNER_USER_AGENTS, AutomationHeuristics
from unsubkit.consent.model import Action, ConsentChange, Mechanism, RequestMeta, Scope
from unsubkit.service import Unsubkit
from unsubkit.settings import Settings

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/124.0.0.0 Safari/537.36")


def change(issued: int | None, ua: str | None = None) -> ConsentChange:
    return ConsentChange(address="jane@example.com", scope=Scope.purpose(1), action=Action.OPT_OUT,
                         source="Email - list-unsubscribe", reason="x", mechanism=Mechanism.ONE_CLICK,
                         meta=RequestMeta("192.0.2.1", ua), token_issued_at=issued)


def test_timing_window() -> None:
    h = AutomationHeuristics(window_seconds=10)
    assert h(change(1000, CHROME), 1004.5) == (True, "request 4.5s after the token was issued (window 10s)")
    assert h(change(1000, CHROME), 1010.0)[0]
    assert h(change(1000, CHROME), 1010.5) == (False, None)
    assert h(change(1000, CHROME), 995.0)[0]  # the issuing instance's clock runs ahead
    assert h(change(None, CHROME), 1000.0) == (False, None)
    assert AutomationHeuristics(window_seconds=0)(change(1000, CHROME), 1000.0) == (False, None)


@pytest.mark.parametrize("ua", [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0 Safari/537.36",
    "Proofpoint URL Defense",
    "Mozilla/5.0 (compatible; MSIE 7.0; Windows NT 6.1; ms-office; MSOffice 16)",
    "Barracuda Sentinel (EE)",
    "python-requests/2.31.0",
])
def test_scanner_user_agents(ua: str) -> None:
    suspected, evidence = AutomationHeuristics()(change(1000, ua), 5000.0)
    assert suspected and evidence and "user agent matches scanner pattern" in evidence


def test_both_signals_and_custom_list() -> None:
    h = AutomationHeuristics.build(5, ["  MyScanner ", ""])
    assert h.scanner_user_agents == ("myscanner",)
    suspected, evidence = h(change(1000, "myscanner/2.0"), 1001.0)
    assert suspected and evidence is not None
    assert "after the token was issued" in evidence and "'myscanner'" in evidence
    assert h(change(1000, "Proofpoint"), 2000.0) == (False, None)
    assert h(change(1000, CHROME), 2000.0) == (False, None)
    assert "mimecast" in DEFAULT_SCANNER_USER_AGENTS and "safelinks" in DEFAULT_SCANNER_USER_AGENTS


def test_flag_is_recorded_but_never_blocks(kit: Unsubkit, clock: FrozenClock) -> None:
    token = kit.headers_for("jane@example.com", "marketing").token
    assert token is not None
    claims = kit.open_token(token)
    clock.advance(2)
    [ev] = kit.record(kit.changes_for_token(claims, mechanism=Mechanism.ONE_CLICK,
                                            meta=RequestMeta("192.0.2.7", CHROME)))
    assert ev.suspected_automated and ev.changed
    assert ev.evidence is not None and "after the token was issued" in ev.evidence
    assert not kit.can_send("jane@example.com", "marketing").allowed
    # A human, days later, in a normal browser: not flagged.
    t2 = kit.headers_for("john@example.com", "marketing").token
    assert t2 is not None
    clock.advance(3 * 86400)
    [human] = kit.record(kit.changes_for_token(kit.open_token(t2), mechanism=Mechanism.ONE_CLICK,
                                               meta=RequestMeta("192.0.2.8", CHROME)))
    assert not human.suspected_automated and human.evidence is None
    stored = {e.id: e for e in kit.events(suspected=True)}
    assert list(stored) == [ev.id] and stored[ev.id].evidence == ev.evidence
    assert stored[ev.id].client_ip == "192.0.2.7" and stored[ev.id].user_agent == CHROME


def test_settings_drive_the_heuristics(make_settings: Callable[..., Settings], clock: FrozenClock) -> None:
    settings = make_settings(automation_window_seconds=0, scanner_user_agents=["acme-scanner"])
    kit = build_kit(settings, clock)
    try:
        token = kit.headers_for("jane@example.com", "marketing").token
        assert token is not None
        claims = kit.open_token(token)
        [fast] = kit.record(kit.changes_for_token(claims, mechanism=Mechanism.ONE_CLICK,
                                                  meta=RequestMeta(None, "Proofpoint")))
        assert not fast.suspected_automated  # window off, Proofpoint not on this list
        [scanner] = kit.record(kit.changes_for_token(claims, mechanism=Mechanism.ONE_CLICK,
                                                     meta=RequestMeta(None, "ACME-Scanner/1")))
        assert scanner.suspected_automated and not scanner.changed
    finally:
        kit.close()
