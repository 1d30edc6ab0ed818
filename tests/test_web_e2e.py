"""End to end against a real ``unsubkit serve`` subprocess."""

from __future__ import annotations

import json

import httpx

from conftest import Server


def token_for(server: Server, to: str = "jane@example.com", *extra: str) -> dict[str, str]:
    out = server.cli("headers", "--to", to, "--purpose", "marketing", "--json", *extra)
    data: dict[str, str] = json.loads(out.stdout)
    return data


def opted_out(server: Server, address: str) -> bool:
    out = json.loads(server.cli("consent", "status", address, "--json").stdout)
    return any(c["purpose"] == "marketing" and c["topic"] is None and c["opted_out"] for c in out["consent"])


def test_gmail_shaped_post_opts_out(server: Server) -> None:
    data = token_for(server)
    path = "/u/" + data["token"]
    assert data["url"] == "https://unsub.example.com" + path
    assert not opted_out(server, "jane@example.com")
    r = httpx.post(server.url + path, content=b"List-Unsubscribe=One-Click",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.request.headers["content-length"] == "26"
    assert r.status_code == 200
    assert "set-cookie" not in r.headers
    assert opted_out(server, "jane@example.com")
