"""``unsubkit ingest``: the pipe for MTAs (exit statuses by sysexits) and mbox / Maildir ingest,
fed with the real newsletters corpus."""

from __future__ import annotations

import json
import mailbox
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import CORPUS, build_kit, cli_env, run_cli
from mail_support import dkim_key, dsn, message, token_address
from unsubkit.mail.fromcheck import FromChecker
from unsubkit.mail.ingest import (
    Exit,
    envelope_from_headers,
    ingest_mailbox,
    ingest_message,
    iter_maildir,
    iter_mbox,
    recipients_from_headers,
)
from unsubkit.mail.processor import MailtoProcessor
from unsubkit.service import Unsubkit
from unsubkit.settings import Brand, Settings

NEWSLETTERS = sorted((CORPUS / "real-newsletters").glob("*.eml"))


def test_corpus_is_there() -> None:
    assert len(NEWSLETTERS) == 26


def delivered(rcpt: str, data: bytes) -> bytes:
    return f"Delivered-To: {rcpt}\r\n".encode() + data


def marketing_out(kit: Unsubkit, address: str) -> bool:
    return not kit.can_send(address, "marketing").allowed


# -- header helpers --------------------------------------------------------------------------


def test_recipient_and_sender_from_headers() -> None:
    data = b"Delivered-To: first@example.com\nDelivered-To: second@example.com\nX-Original-To: o@example.com\n\nx"
    assert recipients_from_headers(data) == ["first@example.com"]
    assert recipients_from_headers(b"X-Original-To: <o@example.com>\n\nx") == ["o@example.com"]
    assert recipients_from_headers(b"Subject: none\n\nDelivered-To: body@example.com\n") == []
    assert envelope_from_headers(b"Return-Path: <>\n\n") == ""
    assert envelope_from_headers(b"Return-Path: <b@example.net>\n\n") == "b@example.net"
    assert envelope_from_headers(b"Subject: x\n\n") is None


# -- one message, in process -----------------------------------------------------------------


def test_real_newsletters_to_a_token_address_unsubscribe(kit: Unsubkit) -> None:
    processor = MailtoProcessor(kit)
    for i, path in enumerate(NEWSLETTERS):
        person = f"reader{i}@example.org"
        result = ingest_message(processor, delivered(token_address(kit, person), path.read_bytes()))
        assert (result.status, result.exit, result.events) == ("recorded", Exit.OK, 1), path.name
        assert marketing_out(kit, person)


def test_real_newsletters_as_delivered_are_not_ours(kit: Unsubkit) -> None:
    processor = MailtoProcessor(kit)
    for path in NEWSLETTERS:
        result = ingest_message(processor, path.read_bytes())
        assert (result.exit, result.detail) == (Exit.NOUSER, "relay denied"), path.name


def test_truncated_newsletters_never_crash(kit: Unsubkit) -> None:
    processor = MailtoProcessor(kit, from_checker=FromChecker(lambda n, t: None))
    rcpt = token_address(kit)
    for path in NEWSLETTERS[::3]:
        data = path.read_bytes()
        for cut in (1, 17, 200, len(data) // 3, len(data) - 5):
            result = ingest_message(processor, delivered(rcpt, data[:cut]))
            assert result.exit is Exit.OK, (path.name, cut)


def test_real_newsletters_do_not_prove_a_sender(make_settings: Callable[..., Settings],
                                                clock: Callable[[], float]) -> None:
    # Real DKIM signatures whose keys are not published here prove nothing: 77, no crash.
    kit = build_kit(make_settings(brands={"default": Brand(mailto_from_fallback=True)}), clock)
    try:
        processor = MailtoProcessor(kit, from_checker=FromChecker(lambda n, t: None))
        for path in NEWSLETTERS:
            result = ingest_message(processor, path.read_bytes(), recipients=["unsubscribe@example.com"])
            assert result.exit is Exit.NOPERM, path.name
        key = dkim_key("example.org")
        checker = FromChecker(lambda n, t: key.txt.encode() if n.rstrip(".") == key.dns_name else None)
        signed = key.sign(message(frm="jane@example.org"))
        proving = MailtoProcessor(kit, from_checker=checker)
        assert ingest_message(proving, signed, recipients=["unsubscribe@example.com"]).exit is Exit.OK
        assert marketing_out(kit, "jane@example.org")
    finally:
        kit.close()


def test_bounces_and_bad_input(kit: Unsubkit) -> None:
    processor = MailtoProcessor(kit)
    rcpt = token_address(kit)
    assert ingest_message(processor, dsn(rcpt), recipients=[rcpt], sender="").status == "dropped"
    assert ingest_message(processor, b"Return-Path: <>\n" + message(), recipients=[rcpt]).status == "dropped"
    assert ingest_message(processor, b"", recipients=[rcpt]).exit is Exit.DATAERR
    assert ingest_message(processor, message()).exit is Exit.DATAERR  # no recipient anywhere
    assert ingest_message(processor, message(), recipients=["unsubscribe+zz@example.com"]).exit is Exit.NOUSER
    assert not marketing_out(kit, "jane@example.org")


# -- mailboxes, in process -------------------------------------------------------------------


def build_mbox(path: Path, kit: Unsubkit) -> list[str]:
    box = mailbox.mbox(str(path))
    people = []
    for i, eml in enumerate(NEWSLETTERS):
        person = f"mbox{i}@example.org"
        people.append(person)
        box.add(delivered(token_address(kit, person), eml.read_bytes()))
    box.add(b"Return-Path: <>\n" + delivered(token_address(kit, "bounce@example.org"), dsn("x")))
    box.add(message())  # no recipient
    box.add(delivered("unsubscribe+bogus@example.com", message()))
    box.flush()
    box.close()
    return people


def test_mbox_summary(kit: Unsubkit, tmp_path: Path) -> None:
    people = build_mbox(tmp_path / "unsub.mbox", kit)
    total, items = iter_mbox(tmp_path / "unsub.mbox")
    assert total == 29
    ticks: list[int] = []
    summary = ingest_mailbox(MailtoProcessor(kit), items, batch=10, progress=lambda: ticks.append(1))
    assert len(ticks) == 29
    assert (summary.messages, summary.recorded, summary.events, summary.changed) == (29, 26, 26, 26)
    assert summary.dropped == 1
    assert sum(summary.invalid.values()) == 1
    assert dict(summary.refused) == {"unsubscribe address is not valid": 1}
    assert all(marketing_out(kit, p) for p in people)
    assert not marketing_out(kit, "bounce@example.org")


def test_maildir(kit: Unsubkit, tmp_path: Path) -> None:
    box = mailbox.Maildir(str(tmp_path / "Maildir"))
    for i, eml in enumerate(NEWSLETTERS[:5]):
        box.add(delivered(token_address(kit, f"md{i}@example.org"), eml.read_bytes()))
    box.close()
    total, items = iter_maildir(tmp_path / "Maildir")
    summary = ingest_mailbox(MailtoProcessor(kit), items)
    assert (total, summary.recorded) == (5, 5)
    assert all(marketing_out(kit, f"md{i}@example.org") for i in range(5))
    # Read-only: the messages are still where they were.
    assert len(mailbox.Maildir(str(tmp_path / "Maildir"))) == 5


# -- the real CLI ----------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> dict[str, str]:
    e = cli_env(tmp_path, db_url)
    run_cli("init", env=e)
    return e


@pytest.fixture
def cli_kit(env: dict[str, str], tmp_path: Path, db_url: str) -> Iterator[Unsubkit]:
    settings = Settings(database_url=db_url, data_dir=tmp_path / "data", base_url="https://unsub.example.com",
                        mailto_address="unsubscribe@example.com")
    kit = Unsubkit.open(settings)
    yield kit
    kit.close()


def pipe(env: dict[str, str], data: bytes, *args: str) -> tuple[int, str, str]:
    res = run_cli("ingest", *args, env=env, check=False, input=data)
    return res.returncode, res.stdout.decode(), res.stderr.decode()  # type: ignore[attr-defined]


def test_pipe_exit_statuses(env: dict[str, str], cli_kit: Unsubkit) -> None:
    rcpt = token_address(cli_kit, "pipe@example.org")
    code, out, err = pipe(env, message(), f"--recipient={rcpt}", "--sender=pipe@example.org", "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "recorded"
    assert marketing_out(cli_kit, "pipe@example.org")
    # The recipient from Delivered-To, as Postfix's local delivery and procmail see it.
    rcpt2 = token_address(cli_kit, "dt@example.org")
    assert pipe(env, delivered(rcpt2, message()))[0] == 0
    assert marketing_out(cli_kit, "dt@example.org")
    # A bounce: done (0), nothing recorded.
    rcpt3 = token_address(cli_kit, "b@example.org")
    assert pipe(env, dsn(rcpt3), f"--recipient={rcpt3}", "--sender=")[0] == 0
    assert not marketing_out(cli_kit, "b@example.org")
    # Bad token, foreign domain: 67 with one line on stderr.
    code, _, err = pipe(env, message(), "--recipient=unsubscribe+nope@example.com")
    assert code == 67 and "not valid" in err and "Traceback" not in err
    assert pipe(env, message(), "--recipient=unsubscribe+x@example.net")[0] == 67
    # No recipient, empty input: 65.
    assert pipe(env, message())[0] == 65
    assert pipe(env, b"", f"--recipient={rcpt}")[0] == 65
    # The fallback is off for this brand: bare address is "no such user".
    assert pipe(env, message(), "--recipient=unsubscribe@example.com")[0] == 67


def test_pipe_temporary_failures(tmp_path: Path, env: dict[str, str], cli_kit: Unsubkit) -> None:
    rcpt = token_address(cli_kit, "later@example.org")
    # Not initialized (no key ring): retry, do not bounce.
    broken = dict(env, UNSUBKIT_DATA_DIR=str(tmp_path / "nowhere"))
    code, _, err = pipe(broken, message(), f"--recipient={rcpt}")
    assert code == 75 and "not initialized" in err
    # The database is down (nothing listens on that port).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    down = dict(env, UNSUBKIT_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{dead_port}/none")
    code, _, err = pipe(down, message(), f"--recipient={rcpt}")
    assert code == 75 and "Traceback" not in err
    assert not marketing_out(cli_kit, "later@example.org")


def test_pipe_locked_sqlite_is_temporary(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    env = cli_env(tmp_path, f"sqlite:///{db}")
    run_cli("init", env=env)
    settings = Settings(database_url=f"sqlite:///{db}", data_dir=tmp_path / "data",
                        mailto_address="unsubscribe@example.com")
    kit = Unsubkit.open(settings)
    rcpt = token_address(kit, "locked@example.org")
    lock = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(60, lock.rollback)
    release.start()
    try:
        started = time.monotonic()
        code, _, err = pipe(env, message(), f"--recipient={rcpt}")
        assert code == 75, err
        assert "locked" in err
        assert time.monotonic() - started < 60
    finally:
        release.cancel()
        lock.rollback()
        lock.close()
    assert pipe(env, message(), f"--recipient={rcpt}")[0] == 0  # the MTA's retry succeeds
    assert marketing_out(kit, "locked@example.org")
    kit.close()


def test_cli_mbox_and_maildir(env: dict[str, str], cli_kit: Unsubkit, tmp_path: Path) -> None:
    people = build_mbox(tmp_path / "in.mbox", cli_kit)
    res = run_cli("ingest", "--mbox", str(tmp_path / "in.mbox"), "--json", env=env)
    summary = json.loads(res.stdout)
    assert (summary["messages"], summary["recorded"], summary["dropped"]) == (29, 26, 1)
    assert all(marketing_out(cli_kit, p) for p in people)
    table = run_cli("ingest", "--mbox", str(tmp_path / "in.mbox"), env=env).stdout
    assert "29 message(s)" in table and "recorded" in table
    box = mailbox.Maildir(str(tmp_path / "md"))
    box.add(delivered(token_address(cli_kit, "maildir@example.org"), message()))
    box.close()
    res = run_cli("ingest", "--maildir", str(tmp_path / "md"), "--json", env=env)
    assert json.loads(res.stdout)["recorded"] == 1
    missing = run_cli("ingest", "--mbox", str(tmp_path / "nope.mbox"), env=env, check=False)
    assert missing.returncode == 1 and "no mbox file" in missing.stderr and "Traceback" not in missing.stderr
    notmaildir = run_cli("ingest", "--maildir", str(tmp_path), env=env, check=False)
    assert notmaildir.returncode == 1 and "no Maildir" in notmaildir.stderr
