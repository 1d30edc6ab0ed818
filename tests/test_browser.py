"""The pages in a real browser: Debian's chromium driven by Playwright (never a downloaded browser).

Link scanners run JavaScript too, so the landing page is loaded with JavaScript enabled and must
still change nothing until the button is pressed.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from conftest import Server

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("UNSUBKIT_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AUTH = {"Authorization": "Bearer test-api-key"}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """Pages do not depend on the backend (the store tests cover both): SQLite keeps this quick."""
    return f"sqlite:///{tmp_path / 'unsubkit.db'}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(java_script_enabled=True)
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


def new_token(server: Server, to: str) -> str:
    r = httpx.post(f"{server.url}/api/v1/headers", json={"to": to, "purpose": "marketing"}, headers=AUTH)
    assert r.status_code == 200, r.text
    token: str = r.json()["token"]
    return token


def consent(server: Server, address: str) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/api/v1/consent/{address}", headers=AUTH)
    assert r.status_code == 200
    data: dict[str, Any] = r.json()
    return data


def marketing_out(server: Server, address: str) -> bool:
    return any(c["purpose"] == "marketing" and c["topic"] is None and c["opted_out"]
               for c in consent(server, address)["consent"])


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_landing_page_shows_masked_address_and_changes_nothing(server: Server, page: Page, tmp_path: Path) -> None:
    token = new_token(server, "jane.doe@example.com")
    response = page.goto(f"{server.url}/u/{token}", wait_until="networkidle")
    assert response is not None and response.status == 200
    assert page.locator("#address").inner_text() == "j***@example.com"
    assert page.locator("#purpose").inner_text() == "marketing"
    assert "jane.doe" not in page.content()
    assert page.locator("script").count() == 0
    # Give any auto-submit a chance to happen, with JavaScript on: nothing may change.
    page.wait_for_timeout(1500)
    assert page.url == f"{server.url}/u/{token}"
    assert consent(server, "jane.doe@example.com")["events"] == []

    shot = tmp_path / "landing.png"
    page.screenshot(path=str(shot), full_page=True)
    width, height = png_size(shot)
    assert 300 <= width <= 4000 and 200 <= height <= 10_000, (width, height)
    assert 3_000 < shot.stat().st_size < 5_000_000


def test_unsubscribe_button_then_resubscribe(server: Server, page: Page) -> None:
    address = "clicker@example.com"
    token = new_token(server, address)
    page.goto(f"{server.url}/u/{token}")
    page.click("#unsubscribe")
    page.wait_for_selector("#done")
    assert "You are unsubscribed" in page.locator("#done").inner_text()
    assert marketing_out(server, address)
    [event] = consent(server, address)["events"]
    assert event["mechanism"] == "landing page"
    assert event["reason"] == "Opt-out - Landing page"
    assert event["action"] == "opt-out"

    page.click("#resubscribe")
    page.wait_for_selector("#saved")
    assert "subscribed again" in page.locator("#saved").inner_text()
    assert page.locator("#status").inner_text() == "subscribed"
    assert not marketing_out(server, address)
    actions = [e["action"] for e in consent(server, address)["events"]]
    assert actions == ["opt-out", "opt-in"]


def test_landing_page_reports_an_existing_opt_out(server: Server, page: Page) -> None:
    address = "already@example.com"
    token = new_token(server, address)
    httpx.post(f"{server.url}/u/{token}", content=b"List-Unsubscribe=One-Click",
               headers={"Content-Type": "application/x-www-form-urlencoded"})
    page.goto(f"{server.url}/u/{token}")
    assert "already unsubscribed" in page.locator("#state").inner_text()


def test_preference_page_toggles(server: Server, page: Page) -> None:
    address = "prefs@example.com"
    token = new_token(server, address)
    page.goto(f"{server.url}/p/{token}", wait_until="networkidle")
    assert page.locator("#status").inner_text() == "subscribed"
    assert page.locator("#address").inner_text() == "p***@example.com"
    page.wait_for_timeout(500)
    assert consent(server, address)["events"] == []  # loading it changed nothing

    page.click("#unsubscribe")
    page.wait_for_selector("#saved")
    assert page.locator("#status").inner_text() == "unsubscribed"
    assert marketing_out(server, address)

    page.click("#resubscribe")
    page.wait_for_selector("text=Saved: you are subscribed again.")
    assert page.locator("#status").inner_text() == "subscribed"
    assert not marketing_out(server, address)
    events = consent(server, address)["events"]
    assert [(e["action"], e["mechanism"], e["source"]) for e in events] == [
        ("opt-out", "preference page", "Preference center"),
        ("opt-in", "preference page", "Preference center"),
    ]


def test_invalid_and_expired_links_show_an_error_page(server: Server, page: Page) -> None:
    response = page.goto(f"{server.url}/u/not-a-token")
    assert response is not None and response.status == 400
    assert "not valid" in page.content()
    response = page.goto(f"{server.url}/p/not-a-token")
    assert response is not None and response.status == 400
