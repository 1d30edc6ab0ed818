"""End to end against a real ``unsubkit serve`` subprocess (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Server
from unsubkit.keystore import load_ring
from unsubkit.tokens import Claims, KeyRing, TokenCodec, new_key

API_KEY = "test-api-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
ONE_CLICK = b"List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def token_for(server: Server, to: str = "jane@example.com", *extra: str) -> dict[str, str]:
    out = server.cli("headers", "--to", to, "--purpose", "marketing", "--json", *extra)
    data: dict[str, str] = json.loads(out.stdout)
    return data


def api_headers(server: Server, to: str, purpose: str = "marketing", **extra: str) -> dict[str, Any]:
    r = httpx.post(f"{server.url}/api/v1/headers", json={"to": to, "purpose": purpose, **extra}, headers=AUTH)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def status(server: Server, address: str) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/api/v1/consent/{address}", headers=AUTH)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def marketing_out(server: Server, address: str) -> bool:
    return any(
        c["purpose"] == "marketing" and c["topic"] is None and c["opted_out"]
        for c in status(server, address)["consent"]
    )


def snapshot(server: Server, address: str) -> tuple[Any, int]:
    s = status(server, address)
    return s["consent"], len(s["events"])


def opted_out(server: Server, address: str) -> bool:
    out = json.loads(server.cli("consent", "status", address, "--json").stdout)
    return any(c["purpose"] == "marketing" and c["topic"] is None and c["opted_out"] for c in out["consent"])


def server_codec(server: Server, at: float) -> TokenCodec:
    """A codec on the server's own key ring file, with a clock of our choosing."""
    return TokenCodec(load_ring(server.config.parent / "data" / "keys.json"), clock=lambda: at)


def marketing_id(server: Server) -> int:
    rows = json.loads(server.cli("purposes", "list", "--json").stdout)
    return int(next(r["id"] for r in rows if r["name"] == "marketing"))


def post(server: Server, token: str, content: bytes | None = ONE_CLICK, **headers: str) -> httpx.Response:
    hdrs = FORM if content == ONE_CLICK and not headers else headers
    return httpx.post(f"{server.url}/u/{token}", content=content, headers=hdrs, follow_redirects=False)


def assert_plain_2xx(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text
    assert "set-cookie" not in r.headers
    assert "location" not in r.headers


# -- the three body shapes -------------------------------------------------------------------------


def test_gmail_shaped_post_opts_out(server: Server) -> None:
    data = token_for(server)
    path = "/u/" + data["token"]
    assert data["url"] == "https://unsub.example.com" + path
    assert not opted_out(server, "jane@example.com")
    r = httpx.post(server.url + path, content=b"List-Unsubscribe=One-Click",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.request.headers["content-length"] == "26"
    assert_plain_2xx(r)
    assert r.headers["x-unsubkit-changed"] == "1"
    assert opted_out(server, "jane@example.com")
    [event] = status(server, "jane@example.com")["events"]
    assert event["source"] == "Email - list-unsubscribe"
    assert event["reason"] == "Opt-out - One-click unsubscribe"
    assert event["mechanism"] == "one-click"
    assert event["client_ip"] == "127.0.0.1"


def test_correct_multipart_post_opts_out(server: Server) -> None:
    token = api_headers(server, "multi@example.com")["token"]
    boundary = "----unsubkit-test-boundary-7MA4YWxkTrZu0gW"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="List-Unsubscribe"\r\n'
        "\r\n"
        "One-Click\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    r = post(server, token, body, **{"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert_plain_2xx(r)
    assert marketing_out(server, "multi@example.com")


def test_empty_post_opts_out(server: Server) -> None:
    token = api_headers(server, "empty@example.com")["token"]
    r = httpx.post(f"{server.url}/u/{token}", content=b"")
    assert r.request.headers["content-length"] == "0"
    assert_plain_2xx(r)
    assert marketing_out(server, "empty@example.com")


def test_text_plain_post_opts_out(server: Server) -> None:
    token = api_headers(server, "plain@example.com")["token"]
    r = post(server, token, ONE_CLICK + b"\r\n", **{"Content-Type": "text/plain"})
    assert_plain_2xx(r)
    assert marketing_out(server, "plain@example.com")


def test_form_with_other_fields_is_400_and_changes_nothing(server: Server) -> None:
    token = api_headers(server, "other@example.com")["token"]
    for body in (b"foo=bar", b"List-Unsubscribe=Maybe", b"unsubscribe=yes&List-Unsubscribe=No"):
        r = post(server, token, body, **FORM)
        assert r.status_code == 400
        assert "List-Unsubscribe=One-Click" in r.text
    assert snapshot(server, "other@example.com")[1] == 0


def test_body_over_4_kib_is_413(server: Server) -> None:
    token = api_headers(server, "big@example.com")["token"]
    big = ONE_CLICK + b"&pad=" + b"x" * 4096
    r = post(server, token, big, **FORM)
    assert r.status_code == 413

    def chunks() -> Any:  # no Content-Length: the limit is enforced while reading
        for _ in range(10):
            yield b"x" * 1000

    r2 = httpx.post(f"{server.url}/u/{token}", content=chunks(), headers=FORM)
    assert r2.status_code == 413
    assert snapshot(server, "big@example.com")[1] == 0


# -- GET and HEAD ----------------------------------------------------------------------------------


def test_get_and_head_change_nothing(server: Server) -> None:
    token = api_headers(server, "scanner@example.com")["token"]
    before = snapshot(server, "scanner@example.com")
    g = httpx.get(f"{server.url}/u/{token}", follow_redirects=False)
    assert g.status_code == 200
    assert g.headers["content-type"].startswith("text/html")
    assert "s***@example.com" in g.text
    assert "scanner@example.com" not in g.text
    assert "marketing" in g.text
    assert 'name="List-Unsubscribe" value="One-Click"' in g.text
    assert "<script" not in g.text.lower()
    assert "script-src" not in g.headers["content-security-policy"]  # default-src 'none' covers it
    assert "set-cookie" not in g.headers
    h = httpx.head(f"{server.url}/u/{token}")
    assert h.status_code == 200 and h.content == b""
    for _ in range(3):
        httpx.get(f"{server.url}/u/{token}")
        httpx.get(f"{server.url}/p/{token}")
    assert snapshot(server, "scanner@example.com") == before
    assert not marketing_out(server, "scanner@example.com")


def test_other_methods_are_405(server: Server) -> None:
    token = api_headers(server, "put@example.com")["token"]
    r = httpx.put(f"{server.url}/u/{token}", content=ONE_CLICK)
    assert r.status_code == 405
    assert snapshot(server, "put@example.com")[1] == 0


# -- bad tokens ------------------------------------------------------------------------------------


def flip_last_byte(token: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-1] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_bad_tokens_are_400_and_change_nothing(server: Server) -> None:
    good = api_headers(server, "victim@example.com")["token"]
    foreign = TokenCodec(KeyRing([new_key(time.time())])).seal(
        Claims(address="victim@example.com", purpose_id=marketing_id(server))
    )
    bad = {
        "tampered": flip_last_byte(good),
        "changed char": good[:10] + ("A" if good[10] != "A" else "B") + good[11:],
        "truncated": good[:-5],
        "very short": good[:8],
        "unknown key": foreign,
        "garbage": "not-a-token",
    }
    for what, token in bad.items():
        for method in ("post", "get"):
            r = post(server, token) if method == "post" else httpx.get(f"{server.url}/u/{token}")
            assert r.status_code == 400, (what, method, r.status_code)
            assert "set-cookie" not in r.headers
    assert snapshot(server, "victim@example.com")[1] == 0
    assert post(server, good).status_code == 200  # the real one still works


def test_expired_token_is_410_and_changes_nothing(server: Server) -> None:
    pid = marketing_id(server)
    old = time.time() - 181 * 86400
    expired = server_codec(server, old).seal(Claims(address="old@example.com", purpose_id=pid))
    r = post(server, expired)
    assert r.status_code == 410
    assert httpx.get(f"{server.url}/u/{expired}").status_code == 410
    assert snapshot(server, "old@example.com")[1] == 0
    assert not marketing_out(server, "old@example.com")
    # The same key, a recent issue date: accepted (so the 410 was about age, not the key).
    fresh = server_codec(server, time.time() - 179 * 86400).seal(Claims(address="old@example.com", purpose_id=pid))
    assert post(server, fresh).status_code == 200


# -- idempotency and scope -------------------------------------------------------------------------


def test_repeat_posts_are_200_with_another_event_and_no_change(server: Server) -> None:
    token = api_headers(server, "again@example.com")["token"]
    changed = []
    for _ in range(3):
        r = post(server, token)
        assert_plain_2xx(r)
        changed.append(r.headers["x-unsubkit-changed"])
    assert changed == ["1", "0", "0"]
    s = status(server, "again@example.com")
    assert [e["changed"] for e in s["events"]] == [True, False, False]
    assert marketing_out(server, "again@example.com")


def test_unknown_purpose_id_still_opts_out(server: Server) -> None:
    token = server_codec(server, time.time()).seal(Claims(address="ghost@example.com", purpose_id=987654))
    page = httpx.get(f"{server.url}/u/{token}")
    assert page.status_code == 200  # a page, even for a purpose deleted since
    r = post(server, token)
    assert_plain_2xx(r)
    [event] = status(server, "ghost@example.com")["events"]
    assert event["purpose_id"] == 987654 and event["action"] == "opt-out" and event["changed"]
    assert not marketing_out(server, "ghost@example.com")  # other purposes untouched


def test_transactional_is_never_blocked_by_one_click(server: Server) -> None:
    token = api_headers(server, "tx@example.com")["token"]
    assert post(server, token).status_code == 200
    r = httpx.get(f"{server.url}/api/v1/can-send", params={"address": "tx@example.com", "purpose": "transactional"},
                  headers=AUTH)
    assert r.json()["allowed"] is True
    r = httpx.get(f"{server.url}/api/v1/can-send", params={"address": "tx@example.com", "purpose": "marketing"},
                  headers=AUTH)
    assert r.json()["allowed"] is False


# -- admin API, health, metrics --------------------------------------------------------------------


def test_admin_api_requires_the_bearer_key(server: Server) -> None:
    url = f"{server.url}/api/v1/consent/jane@example.com"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": API_KEY}).status_code == 401
    r = httpx.get(url)
    assert r.headers.get("www-authenticate") == "Bearer"
    assert API_KEY not in r.text
    assert httpx.post(f"{server.url}/api/v1/unsubscribe", json={"address": "a@example.com"}).status_code == 401
    assert httpx.get(url, headers=AUTH).status_code == 200
    r = httpx.post(f"{server.url}/api/v1/unsubscribe", json={"address": "a@example.com", "purpose": "marketing"},
                   headers=AUTH)
    assert r.status_code == 201 and r.json()["source"] == "API"
    assert marketing_out(server, "a@example.com")
    bad = httpx.post(f"{server.url}/api/v1/unsubscribe", json={"address": "nope", "purpose": "marketing"},
                     headers=AUTH)
    assert bad.status_code == 400


def test_healthz_and_metrics(server: Server) -> None:
    r = httpx.get(f"{server.url}/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    token = api_headers(server, "m@example.com")["token"]
    post(server, token)
    post(server, "bogus")
    m = httpx.get(f"{server.url}/metrics")
    assert m.status_code == 200
    assert 'unsubkit_oneclick_requests_total{status="200"} 1.0' in m.text
    assert 'unsubkit_oneclick_requests_total{status="400"} 1.0' in m.text
    assert "unsubkit_group_commit_changes 1.0" in m.text
    assert "unsubkit_writer_process_restarts 0.0" in m.text
    assert token not in m.text


def test_server_log_never_holds_tokens_or_addresses(server: Server) -> None:
    token = api_headers(server, "private.person@example.com")["token"]
    post(server, token)
    httpx.get(f"{server.url}/u/{token}")
    post(server, flip_last_byte(token))
    log = Path(server.log).read_text()
    assert token not in log
    assert "private.person" not in log


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_unreadable_bodies_are_400_not_500(server: Server, content_type: str) -> None:
    token = api_headers(server, "junk@example.com")["token"]
    r = post(server, token, b"\xff\xfe%%%=&&=\x00garbage", **{"Content-Type": content_type})
    assert r.status_code == 400
    assert snapshot(server, "junk@example.com")[1] == 0
