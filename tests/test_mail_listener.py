"""End to end: a real ``unsubkit serve`` subprocess with its mailto listener, real SMTP/LMTP
clients (smtplib, aiosmtplib, a raw socket), and the consent API to see the effect."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest

from conftest import Server, free_port
from mail_support import APPLE, RawSMTP, dkim_key, dsn, message
from unsubkit.errors import ConfigError
from unsubkit.mail.listener import listener_services
from unsubkit.settings import Settings

AUTH = {"Authorization": "Bearer test-api-key"}

pytestmark = pytest.mark.slow


class MailServer:
    def __init__(self, server: Server, smtp_port: int) -> None:
        self.server = server
        self.smtp_port = smtp_port

    def token_address(self, to: str = "jane@example.org", **extra: str) -> str:
        r = httpx.post(f"{self.server.url}/api/v1/headers",
                       json={"to": to, "purpose": "marketing", **extra}, headers=AUTH)
        assert r.status_code == 200, r.text
        mailto: str = r.json()["mailto"]
        return mailto.removeprefix("mailto:").split("?", 1)[0]

    def status(self, address: str) -> dict[str, Any]:
        r = httpx.get(f"{self.server.url}/api/v1/consent/{address}", headers=AUTH)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def opted_out(self, address: str) -> bool:
        return any(c["purpose"] == "marketing" and c["topic"] is None and c["opted_out"]
                   for c in self.status(address)["consent"])

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30)


@pytest.fixture
def mail_server(server_factory: Callable[..., Server]) -> Callable[..., MailServer]:
    def start(*extra: str, extra_toml: str = "") -> MailServer:
        port = free_port()
        return MailServer(server_factory("--smtp-port", str(port), *extra, extra_toml=extra_toml), port)

    return start


def test_token_address_unsubscribes(mail_server: Callable[..., MailServer]) -> None:
    srv = mail_server()
    rcpt = srv.token_address("jane@example.org", message_id="<nl-42@example.com>")
    assert not srv.opted_out("jane@example.org")
    with srv.smtp() as c:
        assert c.sendmail("jane@example.org", [rcpt], message()) == {}
    assert srv.opted_out("jane@example.org")
    (ev,) = srv.status("jane@example.org")["events"]
    assert ev["source"] == "Email - mailto"
    assert ev["reason"] == "Opt-out - mailto unsubscribe"
    assert ev["mechanism"] == "mailto"
    assert ev["message_id"] == "<nl-42@example.com>"


def test_apple_mail_form(mail_server: Callable[..., MailServer]) -> None:
    srv = mail_server()
    rcpt = srv.token_address("apple.user@example.org")
    with srv.smtp() as c:
        c.ehlo("icloud.example")
        c.mail("apple.user@example.org")
        assert c.rcpt(rcpt)[0] == 250
        assert c.data(message(frm="apple.user@example.org", extra=APPLE)) == (250, b"unsubscribe recorded")
    assert srv.opted_out("apple.user@example.org")
    (ev,) = srv.status("apple.user@example.org")["events"]
    assert "Apple Mail" in ev["user_agent"]


def test_bounce_is_dropped(mail_server: Callable[..., MailServer]) -> None:
    srv = mail_server()
    rcpt = srv.token_address("jane@example.org")
    with srv.smtp() as c:
        assert c.sendmail("", [rcpt], dsn(rcpt)) == {}
    assert not srv.opted_out("jane@example.org")
    assert srv.status("jane@example.org")["events"] == []
    assert "dropped message to 1 recipient(s): null reverse-path" in srv.server.log.read_text()


def test_unknown_token_and_foreign_domain(mail_server: Callable[..., MailServer]) -> None:
    srv = mail_server()
    with srv.smtp() as c, pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        c.sendmail("jane@example.org", ["unsubscribe+bm90LWEtdG9rZW4@example.com", "unsubscribe+x@example.net"],
                   message())
    refused = info.value.recipients
    assert refused["unsubscribe+bm90LWEtdG9rZW4@example.com"][0] == 550
    assert refused["unsubscribe+x@example.net"] == (550, b"relay denied")


def test_oversized_message(mail_server: Callable[..., MailServer]) -> None:
    srv = mail_server()
    rcpt = srv.token_address("big@example.org")
    big = message(body=("z" * 998 + "\r\n") * 300)  # ~300 KB > 256 KiB
    with srv.smtp() as c, pytest.raises(smtplib.SMTPSenderRefused) as info:
        c.sendmail("big@example.org", [rcpt], big)  # smtplib declares SIZE=
    assert info.value.smtp_code == 552
    raw = RawSMTP(srv.smtp_port)
    raw.cmd("EHLO x.example")
    raw.cmd("MAIL FROM:<big@example.org>")  # no SIZE: refused after the data
    assert raw.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert raw.data(big)[0] == 552
    raw.close()
    assert not srv.opted_out("big@example.org")


def test_pipelining_many_messages(mail_server: Callable[..., MailServer]) -> None:
    srv = mail_server()
    people = [f"reader{i}@example.org" for i in range(120)]
    rcpts = {p: srv.token_address(p) for p in people}

    async def one_connection(batch: list[str]) -> list[str]:
        replies = []
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.smtp_port) as c:
            assert c.supports_extension("pipelining")  # MAIL/RCPT/DATA go out in one write
            for p in batch:
                errors, reply = await c.sendmail(p, [rcpts[p]], message(frm=p))
                assert errors == {}
                replies.append(reply)
        return replies

    async def run() -> list[str]:
        shards = [people[i::8] for i in range(8)]
        results = await asyncio.gather(*(one_connection(s) for s in shards))
        return [r for rs in results for r in rs]

    assert asyncio.run(run()) == ["unsubscribe recorded"] * len(people)
    assert all(srv.opted_out(p) for p in people)


def test_lmtp_mode(mail_server: Callable[..., MailServer]) -> None:
    srv = mail_server("--lmtp")
    a, b = srv.token_address("a@example.org"), srv.token_address("b@example.org")
    c = RawSMTP(srv.smtp_port)
    assert c.cmd("LHLO postfix.example")[0] == 250
    c.cmd("MAIL FROM:<a@example.org>")
    assert c.cmd(f"RCPT TO:<{a}>")[0] == 250
    assert c.cmd("RCPT TO:<nobody@example.net>") == (550, "relay denied")
    assert c.cmd(f"RCPT TO:<{b}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    first = c.send_content(message())
    second = c.reply()
    assert first == (250, "unsubscribe recorded") and second == (250, "unsubscribe recorded")
    c.close()
    assert srv.opted_out("a@example.org") and srv.opted_out("b@example.org")


def test_from_fallback_with_dns_file(mail_server: Callable[..., MailServer], tmp_path: Path) -> None:
    key = dkim_key("example.org")
    zone = tmp_path / "dkim-zone.txt"
    zone.write_text(key.zone_line())
    srv = mail_server(extra_toml=f'mailto_dns_file = "{zone}"\n'
                                 '[brands.default]\nmailto_from_fallback = true\n')
    with srv.smtp() as c:
        assert c.sendmail("jane@example.org", ["unsubscribe@example.com"],
                          key.sign(message(frm="jane@example.org"))) == {}
        with pytest.raises(smtplib.SMTPDataError) as info:
            c.sendmail("john@example.org", ["unsubscribe@example.com"], message(frm="john@example.org"))
        assert info.value.smtp_code == 550
    assert srv.opted_out("jane@example.org")
    assert srv.status("jane@example.org")["events"][0]["scope"] == "bulk_email"
    assert not srv.opted_out("john@example.org")


def test_explicit_port_in_use_is_one_clear_error(server_factory: Callable[..., Server]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(AssertionError) as info:
            server_factory("--smtp-port", str(port))
    text = str(info.value)
    assert f"cannot listen for mail on 127.0.0.1:{port}" in text
    assert "Traceback" not in text


def test_no_smtp_flag(server_factory: Callable[..., Server]) -> None:
    port = free_port()
    server_factory("--smtp-port", str(port), "--no-smtp")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# -- what serve starts -----------------------------------------------------------------------


def test_listener_services_decisions(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    base = {"data_dir": tmp_path / "data", "mailto_address": "unsubscribe@example.com"}
    assert listener_services(Settings(**base), port=0, enabled=False) == []
    assert listener_services(Settings(**base, smtp_enabled=False), port=0) == []
    assert listener_services(Settings(data_dir=tmp_path / "data"), port=0) == []  # no mailto anywhere
    (service,) = listener_services(Settings(**base), port=0)
    assert callable(service)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # Asked for (flag or setting): one clear error.
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            listener_services(Settings(**base), port=port)
        with pytest.raises(ConfigError):
            listener_services(Settings(**base, smtp_port=port))
    # The default port taken (say, by a second server): a warning, HTTP goes on.
    holder = socket.socket()
    try:
        try:
            holder.bind(("127.0.0.1", 2525))
            holder.listen()
        except OSError:
            pass  # someone else holds it: just as good
        caplog.set_level(logging.WARNING, "unsubkit.mail")
        assert listener_services(Settings(**base)) == []
        assert "the mailto listener is not started" in caplog.text
    finally:
        holder.close()
