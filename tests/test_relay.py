"""The outbound relay end to end: smtplib -> relay -> a real upstream sink on loopback.

Every copy that reaches the sink is checked the way a mailbox provider would: its own token
in List-Unsubscribe, List-Unsubscribe-Post, a body link, a DKIM signature dkimpy verifies.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import json
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import build_kit, cli_env, free_port, run_cli
from mailcorpus import verify_all
from relay_support import RelayThread, SinkHandler, sink
from unsubkit.clock import FrozenClock
from unsubkit.dkimkeys import create_key
from unsubkit.errors import UnknownPurpose
from unsubkit.headers import parse_list_unsubscribe
from unsubkit.relay import RelayConfig, UpstreamConfig
from unsubkit.relay.server import parse_networks
from unsubkit.service import Unsubkit
from unsubkit.settings import Brand, Settings

SENDER = "news@example.com"


def message(*, to: str = "Ann <ann@example.org>, bob@example.org", purpose: str | None = "marketing",
            topic: str | None = None, brand: str | None = None, body: str = "Hello all",
            extra: str = "") -> bytes:
    lines = [f"From: News <{SENDER}>", f"To: {to}", "Subject: Team news",
             "Date: Thu, 01 Jan 2026 10:00:00 +0000", "Message-ID: <n-1@example.com>",
             "MIME-Version: 1.0", "Content-Type: text/plain; charset=us-ascii"]
    if purpose:
        lines.append(f"X-Unsubkit-Purpose: {purpose}")
    if topic:
        lines.append(f"X-Unsubkit-Topic: {topic}")
    if brand:
        lines.append(f"X-Unsubkit-Brand: {brand}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


def token_of(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    url = parse_list_unsubscribe(str(msg["List-Unsubscribe"]))[0]
    return url.rsplit("/", 1)[1]


@dataclass
class Env:
    kit: Unsubkit
    sink: SinkHandler
    sink_port: int
    records: dict[str, str]
    settings: Settings
    tmp: Path

    def relay(self, **overrides: Any) -> RelayThread:
        up = {"host": "127.0.0.1", "port": self.sink_port, "timeout": 10.0, "local_hostname": "relay.test"}
        up.update(overrides.pop("upstream", {}))
        values: dict[str, Any] = {"upstream": UpstreamConfig(**up), "host": "127.0.0.1", "port": 0,
                                  "hostname": "relay.test"}
        values.update(overrides)
        return RelayThread(self.kit, RelayConfig(**values)).start()


def make_env(tmp_path: Path, db_url: str) -> Iterator[Env]:
    settings = Settings(
        database_url=db_url,
        data_dir=tmp_path / "data",
        base_url="https://unsub.example.com",
        mailto_address="unsubscribe@example.com",
        brands={"default": Brand(dkim_keys=["r1._domainkey.example.com"]),
                "shop": Brand(domains=["shop.example.net"], dkim_keys=["e1._domainkey.shop.example.net"],
                              base_url="https://unsub.shop.example.net")},
    )
    r = create_key(settings.dkim_dir, domain="example.com", selector="r1")
    e = create_key(settings.dkim_dir, domain="shop.example.net", selector="e1", algorithm="ed25519")
    kit = build_kit(settings, FrozenClock(time.time()))
    kit.store.add_topic(kit.store.purpose("marketing").id, "weekly")
    with sink() as (handler, port):
        yield Env(kit, handler, port, {r.dns_name: r.txt, e.dns_name: e.txt}, settings, tmp_path)
    kit.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path, f"sqlite:///{tmp_path / 'unsubkit.db'}")


@pytest.fixture
def env_db(tmp_path: Path, db_url: str) -> Iterator[Env]:
    """The same, on SQLite and on PostgreSQL."""
    yield from make_env(tmp_path, db_url)


@pytest.fixture
def relay(env: Env) -> Iterator[RelayThread]:
    r = env.relay()
    yield r
    r.stop()


def send(port: int, rcpts: list[str], data: bytes, sender: str = SENDER) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        return s.sendmail(sender, rcpts, data)


def data_error(port: int, rcpts: list[str], data: bytes, sender: str = SENDER) -> smtplib.SMTPDataError:
    with pytest.raises(smtplib.SMTPDataError) as info:
        send(port, rcpts, data, sender)
    return info.value


# -- the main path, on both databases -------------------------------------------------------


def test_commercial_mail_gets_one_signed_copy_per_recipient(env_db: Env) -> None:
    env = env_db
    env.kit.unsubscribe("carl@example.org", "marketing")
    relay = env.relay()
    try:
        refused = send(relay.port, ["ann@example.org", "bob@example.org", "carl@example.org"],
                       message(extra="X-Unsubkit-Campaign: spring"))
    finally:
        relay.stop()
    assert refused == {}
    assert len(env.sink.received) == 2
    assert env.sink.to("carl@example.org") == []  # opted out: not forwarded
    tokens = {}
    for rcpt in ("ann@example.org", "bob@example.org"):
        (copy,) = env.sink.to(rcpt)
        assert copy.rcpt_tos == [rcpt] and copy.mail_from == SENDER
        msg = copy.msg
        token = token_of(copy.data)
        tokens[rcpt] = token
        assert msg["List-Unsubscribe"] == (
            f"<https://unsub.example.com/u/{token}>, "
            f"<mailto:unsubscribe+{token}@example.com?subject=unsubscribe>"
        )
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert f"https://unsub.example.com/p/{token}".encode() in copy.data.replace(b"=\r\n", b"")
        assert verify_all(copy.data, env.records) == [True]
        assert b"list-unsubscribe-post" in msg["DKIM-Signature"].lower().encode()
        assert not [k for k in msg if k.lower().startswith("x-unsubkit-")]
        claims = env.kit.open_token(token)
        assert claims.address == rcpt
        assert claims.message_id == "<n-1@example.com>"
        assert env.kit.purpose_name(claims.purpose_id) == "marketing"
    assert tokens["ann@example.org"] != tokens["bob@example.org"]
    assert relay.stats.recipients_suppressed == 1
    assert relay.stats.copies_forwarded == 2
    assert relay.stats.control_fields_stripped == 2


# -- consent and purposes --------------------------------------------------------------------


def test_every_recipient_opted_out_is_550(env: Env, relay: RelayThread) -> None:
    env.kit.unsubscribe("carl@example.org", "marketing")
    err = data_error(relay.port, ["carl@example.org"], message(to="carl@example.org"))
    assert err.smtp_code == 550 and b"5.7.1 recipient has unsubscribed" in err.smtp_error
    env.kit.unsubscribe("dora@example.org", None)  # bulk email: do not allow
    err = data_error(relay.port, ["carl@example.org", "dora@example.org"], message())
    assert err.smtp_code == 550 and b"all 2 recipients have unsubscribed" in err.smtp_error
    assert env.sink.received == []


def test_topic_opt_out_blocks_that_topic_only(env: Env, relay: RelayThread) -> None:
    env.kit.unsubscribe("ann@example.org", "marketing", "weekly")
    err = data_error(relay.port, ["ann@example.org"], message(to="ann@example.org", topic="weekly"))
    assert err.smtp_code == 550
    assert send(relay.port, ["ann@example.org"], message(to="ann@example.org")) == {}
    (copy,) = env.sink.received
    assert env.kit.open_token(token_of(copy.data)).topic_id is None


def test_transactional_mail_is_signed_without_unsubscribe_fields(env: Env, relay: RelayThread) -> None:
    env.kit.unsubscribe("ann@example.org", None)  # even the bulk-email switch does not block it
    send(relay.port, ["ann@example.org", "bob@example.org"],
         message(purpose="transactional", body="Your password reset code is 123456"))
    assert len(env.sink.received) == 2
    for copy in env.sink.received:
        msg = copy.msg
        assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None
        assert msg["X-Unsubkit-Purpose"] is None
        assert verify_all(copy.data, env.records) == [True]
        assert copy.data.endswith(b"\r\n\r\nYour password reset code is 123456\r\n")  # no footer


def test_brand_from_the_from_domain_and_from_the_control_field(env: Env, relay: RelayThread) -> None:
    shop = message(to="ann@example.org").replace(f"<{SENDER}>".encode(), b"<deals@shop.example.net>")
    send(relay.port, ["ann@example.org"], shop, sender="deals@shop.example.net")
    (copy,) = env.sink.received
    assert token_of(copy.data) in str(copy.msg["List-Unsubscribe"])
    assert "https://unsub.shop.example.net/u/" in str(copy.msg["List-Unsubscribe"])
    assert env.kit.open_token(token_of(copy.data)).brand == "shop"
    assert verify_all(copy.data, env.records) == [True]  # signed by shop.example.net's Ed25519 key
    assert "d=shop.example.net" in str(copy.msg["DKIM-Signature"])
    err = data_error(relay.port, ["ann@example.org"], message(to="ann@example.org", brand="nope"))
    assert err.smtp_code == 554 and b"unknown brand" in err.smtp_error


def test_purpose_is_required_unless_a_default_is_configured(env: Env, relay: RelayThread) -> None:
    err = data_error(relay.port, ["ann@example.org"], message(to="ann@example.org", purpose=None))
    assert err.smtp_code == 554 and b"X-Unsubkit-Purpose" in err.smtp_error
    err = data_error(relay.port, ["ann@example.org"], message(to="ann@example.org", purpose="nope"))
    assert err.smtp_code == 554 and b"nope" in err.smtp_error
    conflicting = message(to="ann@example.org", extra="X-Unsubkit-Purpose: transactional")
    err = data_error(relay.port, ["ann@example.org"], conflicting)
    assert err.smtp_code == 554 and b"different values" in err.smtp_error
    assert env.sink.received == []
    with pytest.raises(UnknownPurpose):  # a misspelt default is an error at start, not per message
        env.relay(default_purpose="marketnig")
    defaulted = env.relay(default_purpose="marketing")
    try:
        send(defaulted.port, ["ann@example.org"], message(to="ann@example.org", purpose=None))
    finally:
        defaulted.stop()
    (copy,) = env.sink.received
    assert env.kit.purpose_name(env.kit.open_token(token_of(copy.data)).purpose_id) == "marketing"


def test_message_without_message_id_gets_one_derived_from_the_transaction(env: Env, relay: RelayThread) -> None:
    data = message(to="ann@example.org").replace(b"Message-ID: <n-1@example.com>\r\n", b"")
    send(relay.port, ["ann@example.org", "bob@example.org"], data)
    ids = {str(c.msg["Message-ID"]) for c in env.sink.received}
    assert len(ids) == 1 and next(iter(ids)).endswith("@example.com>")
    assert env.kit.open_token(token_of(env.sink.received[0].data)).message_id == next(iter(ids))


def test_unparseable_commercial_message_is_refused(env: Env, relay: RelayThread) -> None:
    no_from = b"To: ann@example.org\r\nX-Unsubkit-Purpose: marketing\r\nSubject: x\r\n\r\nhi\r\n"
    err = data_error(relay.port, ["ann@example.org"], no_from)
    assert err.smtp_code == 554 and b"From" in err.smtp_error
    assert env.sink.received == []


# -- upstream failures -----------------------------------------------------------------------


def test_upstream_down_is_451(env: Env) -> None:
    closed = free_port()
    relay = env.relay(upstream={"port": closed})
    try:
        err = data_error(relay.port, ["ann@example.org"], message(to="ann@example.org"))
    finally:
        relay.stop()
    assert err.smtp_code == 451
    assert b"cannot connect to upstream" in err.smtp_error


def test_upstream_temporary_refusal_is_451(env: Env, relay: RelayThread) -> None:
    env.sink.rcpt_replies["ann@example.org"] = ["450 4.2.1 mailbox busy"]
    err = data_error(relay.port, ["ann@example.org"], message(to="ann@example.org"))
    assert err.smtp_code == 451 and b"4.2.1" in err.smtp_error and b"mailbox busy" in err.smtp_error
    send(relay.port, ["ann@example.org"], message(to="ann@example.org"))  # the app's retry
    assert len(env.sink.to("ann@example.org")) == 1


def test_partial_temporary_failure_retry_sends_only_the_rest(env: Env, relay: RelayThread) -> None:
    """Nothing accepted is lost, nobody gets it twice: 451 after some copies went out, and the
    app's retry of the same transaction sends only the missing ones."""
    env.sink.rcpt_replies["bob@example.org"] = ["451 4.3.0 try again"]
    data = message()
    err = data_error(relay.port, ["ann@example.org", "bob@example.org"], data)
    assert err.smtp_code == 451 and b"1 of 2 copies sent" in err.smtp_error
    assert [r.rcpt_tos for r in env.sink.received] == [["ann@example.org"]]
    assert send(relay.port, ["ann@example.org", "bob@example.org"], data) == {}
    assert len(env.sink.to("ann@example.org")) == 1
    assert len(env.sink.to("bob@example.org")) == 1
    assert verify_all(env.sink.to("bob@example.org")[0].data, env.records) == [True]
    assert len(relay.server.handler.ledger) == 0  # type: ignore[union-attr]  # done: forgotten


def test_permanent_refusal_of_the_only_recipient_passes_the_reason_on(env: Env, relay: RelayThread) -> None:
    env.sink.refuse["gone@example.org"] = "550 5.1.1 <gone@example.org>: Recipient address rejected"
    err = data_error(relay.port, ["gone@example.org"], message(to="gone@example.org"))
    assert err.smtp_code == 550
    assert b"5.1.1" in err.smtp_error and b"Recipient address rejected" in err.smtp_error
    env.sink.data_reply = "554 5.7.1 message content rejected"
    err = data_error(relay.port, ["ann@example.org"], message(to="ann@example.org"))
    assert err.smtp_code == 554 and b"content rejected" in err.smtp_error


def test_some_refused_for_good_are_accepted_and_bounced(env: Env, relay: RelayThread) -> None:
    env.sink.refuse["gone@example.org"] = "550 5.1.1 user unknown"
    assert send(relay.port, ["ann@example.org", "gone@example.org"], message()) == {}
    assert len(env.sink.to("ann@example.org")) == 1
    (bounce,) = env.sink.to(SENDER)
    assert bounce.mail_from == "<>"
    msg = bounce.msg
    assert msg.get_content_type() == "multipart/report"
    assert msg["Auto-Submitted"] == "auto-replied"
    raw = bounce.data.decode()
    assert "Final-Recipient: rfc822; gone@example.org" in raw
    assert "Status: 5.1.1" in raw and "Diagnostic-Code: smtp; 550 user unknown" in raw
    assert "Subject: Team news" in raw  # the original's header fields ...
    assert "Hello all" not in raw  # ... never its body
    assert relay.stats.bounces == 1


def test_bounce_that_cannot_go_out_defers_the_whole_transaction(env: Env, relay: RelayThread) -> None:
    env.sink.refuse["gone@example.org"] = "550 5.1.1 user unknown"
    env.sink.rcpt_replies[SENDER] = ["451 4.3.0 later"]
    data = message()
    err = data_error(relay.port, ["ann@example.org", "gone@example.org"], data)
    assert err.smtp_code == 451 and b"bounce" in err.smtp_error
    assert send(relay.port, ["ann@example.org", "gone@example.org"], data) == {}
    assert len(env.sink.to("ann@example.org")) == 1  # not sent twice
    assert len(env.sink.to(SENDER)) == 1


def test_upstream_connections_are_reused(env: Env, relay: RelayThread) -> None:
    for i in range(5):
        send(relay.port, [f"r{i}@example.org"], message(to=f"r{i}@example.org"))
    assert len(env.sink.received) == 5
    assert relay.server.upstream.connects == 1  # type: ignore[union-attr]


def test_a_pooled_connection_the_upstream_closed_is_replaced(env: Env) -> None:
    from aiosmtpd.controller import Controller

    with sink() as (first, port):
        relay = env.relay(upstream={"port": port})
        try:
            send(relay.port, ["ann@example.org"], message(to="ann@example.org"))
        except BaseException:
            relay.stop()
            raise
    # The upstream restarted on the same port: the idle pooled session is dead.
    second = SinkHandler()
    ctl = Controller(second, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        send(relay.port, ["bob@example.org"], message(to="bob@example.org"))
    finally:
        relay.stop()
        ctl.stop()
    assert len(first.received) == 1 and len(second.received) == 1
    assert relay.server.upstream.connects == 2  # type: ignore[union-attr]


def test_an_upstream_that_does_not_answer_is_451_and_its_session_is_not_reused(env: Env) -> None:
    relay = env.relay(upstream={"timeout": 0.5})
    try:
        env.sink.data_delay = 1.5
        err = data_error(relay.port, ["ann@example.org"], message(to="ann@example.org"))
        assert err.smtp_code == 451 and b"did not answer in time" in err.smtp_error
        env.sink.data_delay = 0
        time.sleep(1.5)  # the sink's late "250" arrives on the abandoned session
        send(relay.port, ["bob@example.org"], message(to="bob@example.org"))
    finally:
        relay.stop()
    assert len(env.sink.to("bob@example.org")) == 1
    assert relay.server.upstream.connects == 2  # type: ignore[union-attr]


def test_non_ascii_addresses_travel_with_smtputf8(env: Env) -> None:
    with sink(enable_SMTPUTF8=True) as (utf8_sink, port):
        relay = env.relay(upstream={"port": port})
        try:
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as s:
                refused = s.sendmail(SENDER, ["jöran@example.org"], message(to="x@example.org"),
                                     mail_options=["SMTPUTF8"])
        finally:
            relay.stop()
    assert refused == {}
    (copy,) = utf8_sink.received
    assert copy.rcpt_tos == ["jöran@example.org"]
    assert env.kit.open_token(token_of(copy.data)).address == "jöran@example.org"
    # An upstream without SMTPUTF8 cannot take the copy: a permanent, explained refusal.
    with sink(enable_SMTPUTF8=False) as (ascii_sink, port):
        relay = env.relay(upstream={"port": port})
        try:
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as s:
                with pytest.raises(smtplib.SMTPDataError) as info:
                    s.sendmail(SENDER, ["jöran@example.org"], message(to="x@example.org"),
                               mail_options=["SMTPUTF8"])
        finally:
            relay.stop()
    assert info.value.smtp_code == 553 and b"SMTPUTF8" in info.value.smtp_error
    assert ascii_sink.received == []


def test_stopping_lets_transactions_in_flight_finish(env: Env) -> None:
    relay = env.relay()
    env.sink.data_delay = 1.0
    result: dict[str, Any] = {}

    def submit() -> None:
        result["refused"] = send(relay.port, ["ann@example.org"], message(to="ann@example.org"))

    t = threading.Thread(target=submit)
    t.start()
    time.sleep(0.5)  # the copy is on its way upstream
    relay.stop()
    t.join(10)
    assert result == {"refused": {}}
    assert len(env.sink.received) == 1
    with pytest.raises(OSError):  # and nothing listens any more
        socket.create_connection(("127.0.0.1", relay.port), timeout=2).close()


# -- the SMTP session ------------------------------------------------------------------------


def test_clients_outside_the_allowed_networks_are_refused(env: Env) -> None:
    relay = env.relay(networks=parse_networks(["10.0.0.0/8"]))
    try:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
            s.ehlo()
            code, text = s.mail(SENDER)
    finally:
        relay.stop()
    assert code == 550 and b"not allowed" in text


def test_recipient_and_size_limits(env: Env) -> None:
    relay = env.relay(max_recipients=2, max_message_size=4096)
    try:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
            s.ehlo()
            assert s.has_extn("size") and s.esmtp_features["size"] == "4096"
            s.mail(SENDER)
            assert s.rcpt("a@example.org")[0] == 250
            assert s.rcpt("A@example.org")[0] == 250  # the same recipient: one copy
            assert s.rcpt("b@example.org")[0] == 250
            assert s.rcpt("c@example.org")[0] == 452
            assert s.rcpt("not an address")[0] == 553
            s.rset()
            s.mail(SENDER)  # no SIZE declared: the limit applies to the data itself
            s.rcpt("a@example.org")
            assert s.data(message(body=("x" * 70 + "\r\n") * 80))[0] == 552
        with pytest.raises(smtplib.SMTPSenderRefused) as info:  # SIZE declared: refused at MAIL
            send(relay.port, ["a@example.org"], message(body=("x" * 70 + "\r\n") * 80))
        assert info.value.smtp_code == 552
    finally:
        relay.stop()
    assert env.sink.received == []


def test_dkim_key_missing_defers(env: Env, relay: RelayThread) -> None:
    (env.settings.dkim_dir / "r1._domainkey.example.com.pem").unlink()
    err = data_error(relay.port, ["ann@example.org"], message(to="ann@example.org"))
    assert err.smtp_code == 451 and b"DKIM" in err.smtp_error


# -- STARTTLS and AUTH upstream ---------------------------------------------------------------


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "sink.crt", tmp / "sink.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_starttls_and_login_to_the_smarthost(env: Env) -> None:
    import ssl

    from aiosmtpd.smtp import AuthResult
    from pydantic import SecretStr

    cert, key = _self_signed(env.tmp)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        logins.append((data.login, data.password))
        return AuthResult(success=data.login == b"app" and data.password == b"s3cret", handled=False)

    with sink(tls_context=ctx, require_starttls=True, auth_required=True, authenticator=authenticator,
              auth_require_tls=True, auth_exclude_mechanism=["LOGIN"]) as (tls_sink, port):
        upstream = {"port": port, "security": "starttls", "username": "app",
                    "password": SecretStr("s3cret"), "ca_file": cert}
        relay = env.relay(upstream=upstream)
        try:
            send(relay.port, ["ann@example.org"], message(to="ann@example.org"))
        finally:
            relay.stop()
        assert logins == [(b"app", b"s3cret")]
        (copy,) = tls_sink.received
        assert verify_all(copy.data, env.records) == [True]
        wrong = env.relay(upstream={**upstream, "password": SecretStr("nope")})
        try:
            err = data_error(wrong.port, ["ann@example.org"], message(to="ann@example.org"))
        finally:
            wrong.stop()
        assert err.smtp_code == 451 and b"login" in err.smtp_error  # the app retries after the fix
        assert b"nope" not in err.smtp_error
    assert "nope" not in repr(UpstreamConfig(host="h", username="u", password=SecretStr("nope"),
                                             security="tls"))


def test_credentials_without_tls_to_a_remote_host_are_a_config_error() -> None:
    from pydantic import SecretStr

    from unsubkit.errors import ConfigError

    with pytest.raises(ConfigError, match="without TLS"):
        UpstreamConfig(host="smtp.example.net", username="u", password=SecretStr("p"))
    UpstreamConfig(host="127.0.0.1", username="u", password=SecretStr("p"))  # loopback is fine


# -- the command line ------------------------------------------------------------------------


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"relay exited early: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"relay did not listen: {log.read_text()}")


def test_unsubkit_relay_command(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    env = cli_env(tmp_path, db, '[brands.default]\ndkim_keys = ["s1._domainkey.example.com"]\n')
    run_cli("init", env=env)
    txt = run_cli("dkim", "keygen", "--domain", "example.com", "--selector", "s1", "--json", env=env)
    record = json.loads(txt.stdout)
    bad = run_cli("relay", "--upstream", "nowhere", env=env, check=False)
    assert bad.returncode != 0 and "HOST:PORT" in bad.stderr and "Traceback" not in bad.stderr
    none = run_cli("relay", env=env, check=False)
    assert none.returncode != 0 and "relay_upstream_host" in none.stderr and "Traceback" not in none.stderr
    with sink() as (handler, sink_port):
        port = free_port()
        log = tmp_path / "relay.log"
        with log.open("ab") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "unsubkit", "relay", "--listen", f"127.0.0.1:{port}",
                 "--upstream", f"127.0.0.1:{sink_port}", "--default-purpose", "marketing"],
                env=env, stdout=fh, stderr=subprocess.STDOUT,
            )
        try:
            _wait_port(port, proc, log)
            send(port, ["ann@example.org"], message(to="ann@example.org", purpose=None))
        finally:
            proc.terminate()
            proc.wait(30)
        assert proc.returncode == 0, log.read_text()
        (copy,) = handler.received
        assert verify_all(copy.data, {record["dns_name"]: record["txt"]}) == [True]
        assert copy.msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "relay listening on 127.0.0.1" in log.read_text()
        assert "ann@example.org" not in log.read_text()  # addresses are masked in logs


def test_relay_config_from_settings_and_overrides(tmp_path: Path) -> None:
    from unsubkit.errors import ConfigError

    base = {"database_url": f"sqlite:///{tmp_path / 'u.db'}", "data_dir": tmp_path / "data"}
    s = Settings(**base, relay_upstream_host="smtp.example.net", relay_upstream_port=587,
                 relay_upstream_security="starttls", relay_upstream_username="app",
                 relay_upstream_password="pa55word", relay_allowed_clients=["10.0.0.0/8"],
                 relay_default_purpose="marketing", relay_max_recipients=7)
    cfg = RelayConfig.from_settings(s)
    assert (cfg.host, cfg.port, cfg.max_recipients, cfg.default_purpose) == ("127.0.0.1", 2526, 7, "marketing")
    assert cfg.upstream.address == "smtp.example.net:587" and cfg.upstream.security == "starttls"
    assert cfg.upstream.password is not None and cfg.upstream.password.get_secret_value() == "pa55word"
    assert "pa55word" not in repr(s) and "pa55word" not in repr(cfg)
    assert [str(n) for n in cfg.networks] == ["10.0.0.0/8"]
    over = RelayConfig.from_settings(s, host="::1", port=0, upstream_host="127.0.0.1", upstream_port=25,
                                     security="none", allow=["192.168.0.0/16"], default_purpose="transactional")
    assert (over.host, over.port, over.upstream.address, over.default_purpose) == (
        "::1", 0, "127.0.0.1:25", "transactional")
    assert [str(n) for n in over.networks] == ["192.168.0.0/16"]
    with pytest.raises(ConfigError, match="without TLS"):
        RelayConfig.from_settings(s, security="none")
    with pytest.raises(ConfigError, match="relay_upstream_host"):
        RelayConfig.from_settings(Settings(**base))
