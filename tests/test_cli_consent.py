"""``unsubkit consent`` and ``unsubkit contacts`` as subprocesses, and a real server on an
identity-level brand (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Server, cli_env, run_cli
from unsubkit.cli.consent import parse_mechanism, parse_since
from unsubkit.consent.model import Mechanism
from unsubkit.errors import UnsubkitError


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> dict[str, str]:
    e = cli_env(tmp_path, db_url)
    run_cli("init", env=e)
    run_cli("topics", "add", "news", "--purpose", "marketing", env=e)
    return e


def cli_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(run_cli(*args, "--json", env=env).stdout)


def fails(env: dict[str, str], *args: str) -> str:
    res = run_cli(*args, env=env, check=False)
    assert res.returncode != 0, res.stdout
    assert "Traceback" not in res.stderr
    return str(res.stderr)


def test_parse_helpers() -> None:
    assert parse_since("7d", 1_000_000.0) == 1_000_000.0 - 7 * 86400
    assert parse_since("90m", 10_000.0) == 10_000.0 - 5400
    assert parse_since("2026-01-01", 0) == 1_767_225_600.0
    assert parse_since("2026-01-01T01:00:00+01:00", 0) == 1_767_225_600.0
    with pytest.raises(UnsubkitError, match="--since"):
        parse_since("yesterday", 0)
    assert parse_mechanism("landing-page") is Mechanism.LANDING_PAGE
    assert parse_mechanism("One_Click") is Mechanism.ONE_CLICK
    with pytest.raises(UnsubkitError, match="unknown mechanism"):
        parse_mechanism("carrier-pigeon")


def test_opt_out_opt_in_history_and_events(env: dict[str, str]) -> None:
    assert run_cli("consent", "opt-out", "Jane@Example.com", "--purpose", "marketing", "--topic", "news",
                   env=env).stdout == "jane@example.com: opted out (topic, channel level)\n"
    again = run_cli("consent", "opt-out", "jane@example.com", "--purpose", "marketing", "--topic", "news",
                    env=env).stdout
    assert again.endswith("- no change\n")
    ev = cli_json(env, "consent", "opt-in", "jane@example.com", "--purpose", "marketing", "--topic", "news")
    assert ev["action"] == "opt-in" and ev["mechanism"] == "cli" and ev["changed"] is True
    h = cli_json(env, "consent", "history", "jane@example.com")
    assert [e["action"] for e in h["events"]] == ["opt-out", "opt-out", "opt-in"]
    assert [e["state_after"]["topics_opted_out"] for e in h["events"]] == [["news"], ["news"], []]
    assert h["state"] == {"purposes_opted_out": [], "topics_opted_out": [], "bulk_email": "allow"}
    text = run_cli("consent", "history", "jane@example.com", env=env).stdout
    assert "opt-in topic news" in text and text.rstrip().endswith("now: nothing blocked")
    unknown = cli_json(env, "consent", "history", "nobody@example.com")
    assert unknown["known"] is False and unknown["events"] == []
    assert "no consent events" in run_cli("consent", "history", "nobody@example.com", env=env).stdout
    listed = cli_json(env, "consent", "events", "--mechanism", "cli", "--since", "1h")
    assert [e["action"] for e in listed] == ["opt-out", "opt-out", "opt-in"]
    assert listed[0]["topic"] == "news" and listed[0]["address"] == "jane@example.com"
    assert cli_json(env, "consent", "events", "--mechanism", "one-click") == []
    assert cli_json(env, "consent", "events", "--limit", "1")[0]["id"] == listed[0]["id"]
    plain = run_cli("consent", "events", "--address", "JANE@example.com", env=env).stdout.splitlines()
    assert len(plain) == 3 and "jane@example.com  cli  CLI  CLI" in plain[0]
    assert "no events" in run_cli("consent", "events", "--suspected", env=env).stderr


ERRORS = [
    (("consent", "history", "not an address"), "invalid email address"),
    (("consent", "opt-out", "jane@example.com"), "either --purpose"),
    (("consent", "opt-out", "jane@example.com", "--purpose", "marketing", "--bulk-email"), "either --purpose"),
    (("consent", "opt-out", "jane@example.com", "--topic", "news", "--bulk-email"), "--topic needs --purpose"),
    (("consent", "opt-out", "jane@example.com", "--purpose", "nope"), "unknown purpose 'nope'"),
    (("consent", "opt-in", "jane@example.com", "--purpose", "marketing", "--brand", "zz"), "unknown brand"),
    (("consent", "events", "--mechanism", "fax"), "unknown mechanism 'fax'"),
    (("consent", "events", "--since", "last tuesday"), "--since"),
    (("contacts", "show", "42"), "unknown contact #42"),
    (("contacts", "show", "nobody@example.com"), "does not belong to any contact"),
    (("contacts", "link", "crm-1", "a@example.com"), "not a contact reference"),
    (("contacts", "bulk-email", "1", "maybe"), "'allow' or 'do-not-allow'"),
    (("contacts", "unlink", "jane@example.com"), "does not belong to any contact"),
    (("contacts", "add", "bad@"), "invalid email address"),
]


def test_clear_errors(env: dict[str, str]) -> None:
    for args, message in ERRORS:
        err = fails(env, *args)
        assert message in err and err.count("\n") == 1, (args, err)


def test_contacts_commands(env: dict[str, str]) -> None:
    c = cli_json(env, "contacts", "add", "jane@example.com", "Jane@Work.Example", "--external-id", "crm-1")
    assert c["addresses"] == ["jane@example.com", "jane@work.example"] and c["external_id"] == "crm-1"
    assert "already exists" in fails(env, "contacts", "add", "--external-id", "crm-1")
    assert "already belongs to contact" in fails(env, "contacts", "add", "jane@example.com")
    other = cli_json(env, "contacts", "add", "john@example.com")
    run_cli("contacts", "bulk-email", "ext:crm-1", "do-not-allow", env=env)
    shown = cli_json(env, "contacts", "show", "jane@work.example")
    assert shown["id"] == c["id"] and shown["bulk_email"] == "do_not_allow"
    assert {e["reason"] for e in shown["address_status"]["jane@example.com"]} == {"bulk email not allowed"}
    assert "bulk email: do not allow" in run_cli("contacts", "show", "ext:crm-1", env=env).stdout
    # Moving an address needs --move, and carries the old contact's opt-outs.
    assert "--move" in fails(env, "contacts", "link", str(other["id"]), "jane@work.example")
    moved = run_cli("contacts", "link", f"#{other['id']}", "jane@work.example", "--move", env=env).stdout
    assert "kept on jane@work.example: bulk_email opt-out (Carried over from contact" in moved
    status = cli_json(env, "consent", "status", "jane@work.example")
    assert all(e["opted_out"] for e in status["consent"] if e["kind"] == "commercial")
    assert cli_json(env, "consent", "status", "john@example.com")["consent"][0]["opted_out"] is False
    unlinked = cli_json(env, "contacts", "unlink", "jane@work.example")
    assert unlinked == [{"address": "jane@work.example", "contact_id": other["id"], "carried_over": 0}]
    deleted = run_cli("contacts", "delete", "ext:crm-1", env=env).stdout
    assert deleted.startswith(f"deleted contact #{c['id']}; addresses kept with their consent: jane@example.com")
    assert "deleted" in fails(env, "contacts", "delete", str(c["id"]))
    assert [x["id"] for x in cli_json(env, "contacts", "list")] == [other["id"]]
    assert len(cli_json(env, "contacts", "list", "--deleted")) == 2
    h = cli_json(env, "consent", "history", "jane@example.com")
    assert h["contact_id"] is None and h["state"]["bulk_email"] == "do_not_allow"
    assert h["events"][-1]["source"] == "Contact management"
    assert h["events"][-1]["reason"] == f"Carried over from contact #{c['id']}"


def test_identity_brand_end_to_end(server_factory: Callable[..., Server]) -> None:
    server = server_factory(extra_toml='\n[brands.default]\nconsent_level = "identity"\n')
    c = json.loads(server.cli("contacts", "add", "jane@example.com", "jane@work.example", "--json").stdout)
    headers = json.loads(server.cli("headers", "--to", "jane@work.example", "--purpose", "marketing",
                                    "--json").stdout)
    # Posted within seconds of issue by a scanner-like client: recorded, flagged, honoured.
    r = httpx.post(headers["url"].replace("https://unsub.example.com", server.url),
                   content=b"List-Unsubscribe=One-Click",
                   headers={"Content-Type": "application/x-www-form-urlencoded",
                            "User-Agent": "Mozilla/5.0 HeadlessChrome/120.0"})
    assert r.status_code == 200, r.text
    for address in ("jane@example.com", "jane@work.example"):
        status = json.loads(server.cli("consent", "status", address, "--json").stdout)
        assert next(e for e in status["consent"] if e["purpose"] == "marketing" and not e["topic"])["opted_out"]
    flagged = json.loads(server.cli("consent", "events", "--suspected", "--json").stdout)
    assert len(flagged) == 1 and flagged[0]["mechanism"] == "one-click"
    assert flagged[0]["level"] == "identity" and flagged[0]["contact_id"] == c["id"]
    assert "HeadlessChrome" in flagged[0]["user_agent"] and "headlesschrome" in flagged[0]["evidence"]
    assert "after the token was issued" in flagged[0]["evidence"]
    history = json.loads(server.cli("consent", "history", "jane@example.com", "--json").stdout)
    assert [e["address"] for e in history["events"]] == ["jane@work.example"]


def test_help_documents_the_verbs(env: dict[str, str]) -> None:
    for args in (("filter",), ("contacts",), ("consent", "import"), ("consent", "export"),
                 ("consent", "events"), ("consent", "history"), ("contacts", "link")):
        res = run_cli(*args, "--help", env=env)
        assert res.returncode == 0 and "Usage" in res.stdout
