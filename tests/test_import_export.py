"""Importing suppression lists and exporting state and events (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import cli_env, run_cli
from unsubkit.consent.model import Mechanism, ScopeKind
from unsubkit.errors import ConsentError, UnknownPurpose
from unsubkit.lists import ListReader, export_events, export_state, import_optouts
from unsubkit.lists.transfer import EVENT_FIELDS, STATE_FIELDS
from unsubkit.service import Unsubkit
from unsubkit.store.schema import events, outbox

SENDGRID = "email,created\nJane@Example.com,1700000000\nnot-an-address,1700000001\n" \
           "john@example.com,1700000002\njane@example.com,1700000003\n"
MAILCHIMP = "Email Address,First Name,Last Name\nann@example.com,Ann,A\n,No,Mail\nbob@example.com,Bob,B\n"


def reader(text: str, **kw: object) -> ListReader:
    return ListReader(io.StringIO(text, newline=""), **kw)  # type: ignore[arg-type]


def count(kit: Unsubkit, table: object) -> int:
    with kit.store.engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_import_is_idempotent_and_reports_invalid_rows(kit: Unsubkit) -> None:
    report = import_optouts(kit, reader(SENDGRID), "marketing", source_name="sendgrid", batch=2)
    assert (report.rows, report.imported, report.skipped, report.invalid) == (4, 2, 1, 1)
    assert [(e.line, e.value) for e in report.errors] == [(3, "not-an-address")]
    assert not kit.can_send("jane@example.com", "marketing") and not kit.can_send("john@example.com", "marketing")
    assert kit.can_send("jane@example.com", "transactional")
    n_events, n_outbox = count(kit, events), count(kit, outbox)
    assert n_events == n_outbox == 2
    [ev] = list(kit.events(address="jane@example.com"))
    assert (ev.source, ev.reason, ev.mechanism) == ("Import", "Imported from sendgrid", Mechanism.IMPORT)
    again = import_optouts(kit, reader(SENDGRID), "marketing", source_name="sendgrid")
    assert (again.imported, again.skipped, again.invalid) == (0, 3, 1)
    assert count(kit, events) == n_events and count(kit, outbox) == n_outbox


def test_import_skips_addresses_opted_out_through_their_contact(kit: Unsubkit) -> None:
    c = kit.add_contact(["ann@example.com", "ann@work.example"])
    from unsubkit.consent.model import Action, ConsentChange, ConsentLevel, Scope

    m = kit.store.purpose("marketing")
    kit.record([ConsentChange(address="ann@work.example", scope=Scope.purpose(m.id), action=Action.OPT_OUT,
                              source="API", reason="API", mechanism=Mechanism.API,
                              level=ConsentLevel.IDENTITY)])
    report = import_optouts(kit, reader(MAILCHIMP), "marketing", source_name="mailchimp")
    assert (report.imported, report.skipped, report.invalid) == (1, 1, 1)
    assert report.errors[0].line == 3 and report.errors[0].error == "empty email address"
    assert c.id and not kit.can_send("bob@example.com", "marketing")


def test_import_into_a_topic_and_refusals(kit: Unsubkit) -> None:
    m = kit.store.purpose("marketing")
    kit.store.add_topic(m.id, "news")
    report = import_optouts(kit, reader("jane@example.com\n"), "marketing", "news", source_name="ses")
    assert report.imported == 1
    assert not kit.can_send("jane@example.com", "marketing", "news")
    assert kit.can_send("jane@example.com", "marketing")
    # Same address, other scope: not a duplicate.
    assert import_optouts(kit, reader("jane@example.com\n"), "marketing", source_name="ses").imported == 1
    with pytest.raises(ConsentError, match="transactional"):
        import_optouts(kit, reader("x@example.com\n"), "transactional", source_name="ses")
    with pytest.raises(UnknownPurpose):
        import_optouts(kit, reader("x@example.com\n"), "nope", source_name="ses")
    with pytest.raises(ConsentError, match="--source"):
        import_optouts(kit, reader("x@example.com\n"), "marketing", source_name=" ")


def test_resubscribed_address_is_opted_out_again_by_a_list_naming_it(kit: Unsubkit) -> None:
    import_optouts(kit, reader("jane@example.com\n"), "marketing", source_name="esp")
    kit.resubscribe("jane@example.com", "marketing")
    assert kit.can_send("jane@example.com", "marketing")
    assert import_optouts(kit, reader("jane@example.com\n"), "marketing", source_name="esp").imported == 1
    assert not kit.can_send("jane@example.com", "marketing")


def test_export_state_round_trips_through_import(kit: Unsubkit) -> None:
    m = kit.store.purpose("marketing")
    kit.store.add_topic(m.id, "news")
    kit.unsubscribe("jane@example.com", "marketing")
    kit.unsubscribe("john@example.com", "marketing", "news")
    c = kit.add_contact(["ann@example.com", "ann@work.example"])
    kit.set_bulk_email(c.id, False)
    kit.unsubscribe("bob@example.com", "marketing")
    kit.resubscribe("bob@example.com", "marketing")
    out = io.StringIO()
    assert export_state(kit, out) == 4
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == STATE_FIELDS
    assert {(r["email"], r["scope"], r["purpose"], r["topic"], r["level"], r["contact_id"]) for r in rows} == {
        ("jane@example.com", "purpose", "marketing", "", "channel", ""),
        ("john@example.com", "topic", "marketing", "news", "channel", ""),
        ("ann@example.com", "bulk_email", "", "", "identity", str(c.id)),
        ("ann@work.example", "bulk_email", "", "", "identity", str(c.id)),
    }
    everything = io.StringIO()
    assert export_state(kit, everything, "jsonl", include_opted_in=True) == 5
    lines = [json.loads(x) for x in everything.getvalue().splitlines()]
    assert {x["email"]: x["opted_out"] for x in lines}["bob@example.com"] is False
    # The purpose-level rows re-import as a suppression list (column `email`).
    purpose_rows = "email\n" + "".join(
        r["email"] + "\n" for r in rows if r["scope"] == "purpose")
    kit.resubscribe("jane@example.com", "marketing")
    report = import_optouts(kit, reader(purpose_rows), "marketing", source_name="backup")
    assert report.imported == 1 and not kit.can_send("jane@example.com", "marketing")


def test_export_events(kit: Unsubkit, clock: object) -> None:
    kit.unsubscribe("jane@example.com", "marketing")
    clock.advance(3600)  # type: ignore[attr-defined]
    import_optouts(kit, reader("john@example.com\n"), "marketing", source_name="ses")
    out = io.StringIO()
    assert export_events(kit, out) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == EVENT_FIELDS
    assert [(r["email"], r["mechanism"], r["source"]) for r in rows] == [
        ("jane@example.com", "api", "API"), ("john@example.com", "import", "Import")]
    assert rows[0]["at"].endswith("Z") and rows[0]["purpose"] == "marketing"
    only = io.StringIO()
    assert export_events(kit, only, "jsonl", mechanism=Mechanism.IMPORT) == 1
    assert json.loads(only.getvalue())["email"] == "john@example.com"
    recent = io.StringIO()
    assert export_events(kit, recent, "jsonl", since=clock() - 60) == 1  # type: ignore[operator]
    assert json.loads(recent.getvalue())["scope"] == str(ScopeKind.PURPOSE)


def test_cli_import_and_export(tmp_path: Path, db_url: str) -> None:
    env = cli_env(tmp_path, db_url)
    run_cli("init", env=env)
    src = tmp_path / "suppressions.csv"
    src.write_text(SENDGRID)
    res = run_cli("consent", "import", str(src), "--purpose", "marketing", "--source", "sendgrid", env=env)
    assert res.stderr.splitlines() == [
        "line 3: 'not-an-address': invalid email address: An email address must have an @-sign.",
        "imported 2, skipped 1 (already opted out), invalid 1",
    ]
    res = run_cli("consent", "import", str(src), "--purpose", "marketing", "--source", "sendgrid",
                  "--json", env=env)
    assert json.loads(res.stdout)["imported"] == 0
    res = run_cli("consent", "export", "--format", "jsonl", env=env)
    assert sorted(json.loads(x)["email"] for x in res.stdout.splitlines()) == [
        "jane@example.com", "john@example.com"]
    assert res.stderr.strip() == "exported 2 rows"
    target = tmp_path / "events.csv"
    run_cli("consent", "export", "--events", "--mechanism", "import", "-o", str(target), env=env)
    assert len(list(csv.DictReader(target.open()))) == 2
    bad = run_cli("consent", "import", str(src), "--purpose", "nope", "--source", "x", env=env, check=False)
    assert bad.returncode == 1 and bad.stderr.strip() == "error: unknown purpose 'nope'"
    bad = run_cli("consent", "export", "--format", "xml", env=env, check=False)
    assert bad.returncode == 1 and "use csv or jsonl" in bad.stderr
    bad = run_cli("consent", "export", "--since", "7d", env=env, check=False)
    assert bad.returncode == 1 and "apply to --events" in bad.stderr
