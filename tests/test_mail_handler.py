"""The handler behind a real listener (in this process, on a free loopback port), talked to with
smtplib and a raw socket client: RCPT and DATA decisions, LMTP replies, limits, the From
fallback with a dkimpy-signed message, store failures."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from conftest import build_kit
from mail_support import APPLE, RawSMTP, dkim_key, dsn, message, token_address
from unsubkit.clock import FrozenClock
from unsubkit.consent.model import ConsentChange, Event, Mechanism
from unsubkit.errors import ConfigError, StoreBusy
from unsubkit.mail.fromcheck import FromChecker
from unsubkit.mail.listener import ListenerConfig, MailtoListener, bind_socket
from unsubkit.service import Unsubkit
from unsubkit.settings import Brand, Settings

ORG = dkim_key("example.org")


class Running:
    """A MailtoListener on its own event loop thread (as it runs inside ``serve``)."""

    def __init__(self, kit: Unsubkit, config: ListenerConfig, **kw: Any) -> None:
        self.kit, self.config, self.kw = kit, config, kw
        self.ready = threading.Event()
        self.listener: MailtoListener | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self.thread.start()
        assert self.ready.wait(20), "listener did not start"
        if self.error:
            raise self.error

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        try:
            async with MailtoListener(self.kit, self.config, **self.kw) as listener:
                self.listener = listener
                self.ready.set()
                await self.stopping.wait()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc
            self.ready.set()

    @property
    def port(self) -> int:
        assert self.listener is not None
        return self.listener.port

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(20)


@pytest.fixture
def start(kit: Unsubkit) -> Iterator[Callable[..., Running]]:
    running: list[Running] = []

    def factory(k: Unsubkit | None = None, **kw: Any) -> Running:
        config = ListenerConfig(port=0, **{k2: kw.pop(k2) for k2 in list(kw)
                                           if k2 in ListenerConfig.__dataclass_fields__})
        r = Running(k or kit, config, **kw)
        running.append(r)
        return r

    yield factory
    for r in running:
        r.stop()


@pytest.fixture
def fallback_kit(make_settings: Callable[..., Settings], clock: FrozenClock) -> Iterator[Unsubkit]:
    settings = make_settings(brands={"default": Brand(mailto_from_fallback=True)})
    k = build_kit(settings, clock)
    yield k
    k.close()


def marketing_out(kit: Unsubkit, address: str) -> bool:
    return not kit.can_send(address, "marketing").allowed


def test_token_address_records_then_answers(kit: Unsubkit, start: Callable[..., Running]) -> None:
    srv = start()
    rcpt = token_address(kit, "jane@example.org", message_id="<orig-1@example.com>")
    with smtplib.SMTP("127.0.0.1", srv.port) as c:
        code, caps = c.ehlo("client.example.org")
        assert code == 250 and b"PIPELINING" in caps and b"SIZE 262144" in caps
        assert c.mail("jane@example.org") == (250, b"OK")
        assert c.rcpt(rcpt) == (250, b"OK")
        assert c.data(message(extra=APPLE)) == (250, b"unsubscribe recorded")
    assert marketing_out(kit, "jane@example.org")
    (ev,) = kit.store.events("jane@example.org")
    assert (ev.source, ev.reason, ev.mechanism) == ("Email - mailto", "Opt-out - mailto unsubscribe",
                                                    Mechanism.MAILTO)
    assert ev.message_id == "<orig-1@example.com>"
    assert ev.client_ip == "127.0.0.1"
    assert ev.user_agent == "mailto; Apple Mail (X-Apple-Unsubscribe)"
    assert not kit.can_send("jane@example.org", "marketing").allowed
    assert kit.can_send("jane@example.org", "transactional").allowed


def test_rcpt_refusals(kit: Unsubkit, clock: FrozenClock, start: Callable[..., Running]) -> None:
    srv = start()
    good = token_address(kit)
    c = RawSMTP(srv.port)
    assert c.cmd("EHLO x.example")[0] == 250
    assert c.cmd("MAIL FROM:<jane@example.org>")[0] == 250
    assert c.cmd("RCPT TO:<someone@example.net>") == (550, "relay denied")
    assert c.cmd("RCPT TO:<postmaster@example.com>") == (550, "no such user")
    assert c.cmd("RCPT TO:<unsubscribe@example.com>")[0] == 550  # no fallback for this brand
    tampered = good.replace("unsubscribe+", "unsubscribe+A", 1)
    assert c.cmd(f"RCPT TO:<{tampered}>") == (550, "unsubscribe address is not valid")
    clock.advance(181 * 86400)
    assert c.cmd(f"RCPT TO:<{good}>") == (550, "unsubscribe address has expired")
    assert c.cmd("DATA")[0] == 503  # nothing accepted
    c.close()
    assert kit.store.events("jane@example.org") == []


def test_several_recipients_one_transaction(kit: Unsubkit, start: Callable[..., Running]) -> None:
    srv = start()
    a, b = token_address(kit, "a@example.org"), token_address(kit, "b@example.org")
    with smtplib.SMTP("127.0.0.1", srv.port) as c:
        refused = c.sendmail("a@example.org", [a, b, "x@example.net"], message())
    assert list(refused) == ["x@example.net"]
    assert marketing_out(kit, "a@example.org") and marketing_out(kit, "b@example.org")


def test_too_many_recipients(kit: Unsubkit, start: Callable[..., Running]) -> None:
    srv = start(max_recipients=2)
    addrs = [token_address(kit, f"u{i}@example.org") for i in range(3)]
    c = RawSMTP(srv.port)
    c.cmd("EHLO x.example")
    c.cmd("MAIL FROM:<u0@example.org>")
    assert [c.cmd(f"RCPT TO:<{a}>")[0] for a in addrs] == [250, 250, 452]
    assert c.data(message())[0] == 250
    c.close()
    assert [marketing_out(kit, f"u{i}@example.org") for i in range(3)] == [True, True, False]


def test_pipelined_commands(kit: Unsubkit, start: Callable[..., Running]) -> None:
    srv = start()
    addrs = [token_address(kit, f"p{i}@example.org") for i in range(20)]
    c = RawSMTP(srv.port)
    c.cmd("EHLO x.example")
    for a in addrs:
        c.send(f"MAIL FROM:<me@example.org>\r\nRCPT TO:<{a}>\r\nDATA\r\n".encode())
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
        assert c.send_content(message()) == (250, "unsubscribe recorded")
    c.close()
    assert all(marketing_out(kit, f"p{i}@example.org") for i in range(20))


def test_bounces_are_accepted_and_dropped(kit: Unsubkit, start: Callable[..., Running],
                                          caplog: pytest.LogCaptureFixture) -> None:
    srv = start()
    good = token_address(kit)
    caplog.set_level(logging.INFO, "unsubkit.mail")
    c = RawSMTP(srv.port)
    c.cmd("EHLO mx.example.net")
    # Null reverse-path: every address in our domains is accepted, whatever its token.
    assert c.cmd("MAIL FROM:<>")[0] == 250
    assert c.cmd(f"RCPT TO:<{good}>")[0] == 250
    assert c.cmd("RCPT TO:<unsubscribe+garbage@example.com>")[0] == 250
    assert c.cmd("RCPT TO:<x@example.net>") == (550, "relay denied")
    assert c.data(dsn(good)) == (250, "accepted")
    # A report with a real sender, to a valid token: accepted, dropped.
    c.cmd("MAIL FROM:<postmaster@mx.example.net>")
    c.cmd(f"RCPT TO:<{good}>")
    assert c.data(dsn(good)) == (250, "accepted")
    c.close()
    assert kit.store.events("jane@example.org") == []
    assert "dropped message to 2 recipient(s): null reverse-path" in caplog.text
    assert "multipart/report (delivery-status)" in caplog.text
    assert srv.listener is not None and srv.listener.handler is not None
    assert srv.listener.handler.dropped == 2


def test_garbage_content_still_unsubscribes(kit: Unsubkit, start: Callable[..., Running]) -> None:
    srv = start()
    junk = [b"\x00\xff\xfe" * 50, b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--",
            b"no headers at all", b"From: \xe9\xe8@\xff\r\nSubject: =?bogus?q?x?=\r\n\r\n\xc3"]
    for i, data in enumerate(junk):
        rcpt = token_address(kit, f"g{i}@example.org")
        c = RawSMTP(srv.port)
        c.cmd("EHLO x.example")
        c.cmd("MAIL FROM:<g@example.org>")
        assert c.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
        assert c.data(data) == (250, "unsubscribe recorded")
        c.close()
        assert marketing_out(kit, f"g{i}@example.org")


def test_size_and_line_limits(kit: Unsubkit, start: Callable[..., Running]) -> None:
    srv = start(max_message_size=4096)
    rcpt = token_address(kit)
    c = RawSMTP(srv.port)
    c.cmd("EHLO x.example")
    assert c.cmd("MAIL FROM:<j@example.org> SIZE=999999")[0] == 552
    c.cmd("MAIL FROM:<j@example.org>")
    c.cmd(f"RCPT TO:<{rcpt}>")
    assert c.data(message(body="x" * 80 + "\r\n") * 100)[0] == 552
    c.cmd("MAIL FROM:<j@example.org>")
    c.cmd(f"RCPT TO:<{rcpt}>")
    assert c.data(message(body="y" * 2000 + "\r\n"))[0] == 500  # line over 1000 octets
    c.close()
    assert not marketing_out(kit, "jane@example.org")


def test_idle_sessions_are_closed(kit: Unsubkit, start: Callable[..., Running]) -> None:
    srv = start(idle_timeout=0.5)
    c = RawSMTP(srv.port)
    time.sleep(1.5)
    with pytest.raises((ConnectionError, OSError)):
        c.cmd("EHLO x.example")
        c.cmd("NOOP")


def test_store_failure_asks_to_retry(kit: Unsubkit, start: Callable[..., Running]) -> None:
    async def busy(changes: Sequence[ConsentChange]) -> list[Event]:
        raise StoreBusy("database is locked")

    srv = start(submit=busy)
    rcpt = token_address(kit)
    with smtplib.SMTP("127.0.0.1", srv.port) as c:
        c.ehlo()
        c.mail("jane@example.org")
        c.rcpt(rcpt)
        assert c.data(message()) == (451, b"temporary failure, try again later")
    assert not marketing_out(kit, "jane@example.org")


def test_logs_carry_no_token_or_address(kit: Unsubkit, start: Callable[..., Running],
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    srv = start()
    rcpt = token_address(kit, "secret.person@example.org")
    token = rcpt.split("+", 1)[1].split("@")[0]
    with smtplib.SMTP("127.0.0.1", srv.port) as c:
        c.sendmail("secret.person@example.org", [rcpt], message(frm="secret.person@example.org"))
    assert "opt-out recorded" in caplog.text
    assert token not in caplog.text
    assert "secret.person" not in caplog.text


# -- LMTP ------------------------------------------------------------------------------------


def test_lmtp_answers_per_recipient(fallback_kit: Unsubkit, start: Callable[..., Running]) -> None:
    srv = start(fallback_kit, lmtp=True, from_checker=FromChecker(lambda n, t: None))
    a = token_address(fallback_kit, "a@example.org")
    b = token_address(fallback_kit, "b@example.org")
    c = RawSMTP(srv.port)
    assert c.cmd("EHLO x.example")[0] == 500  # LMTP speaks LHLO only
    code, caps = c.cmd("LHLO postfix.example")
    assert code == 250 and "PIPELINING" in caps
    c.cmd("MAIL FROM:<a@example.org>")
    assert c.cmd(f"RCPT TO:<{a}>")[0] == 250
    assert c.cmd("RCPT TO:<unsubscribe@example.com>")[0] == 250  # bare: fallback enabled
    assert c.cmd(f"RCPT TO:<{b}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    # One reply per accepted recipient, in order: the unsigned message proves no sender.
    replies = [c.send_content(message(frm="a@example.org"))] + [c.reply() for _ in range(2)]
    assert [r[0] for r in replies] == [250, 550, 250]
    assert "DKIM" in replies[1][1]
    c.close()
    assert marketing_out(fallback_kit, "a@example.org") and marketing_out(fallback_kit, "b@example.org")


# -- the From fallback ------------------------------------------------------------------------


def test_from_fallback_with_aligned_dkim(fallback_kit: Unsubkit, start: Callable[..., Running]) -> None:
    records = {ORG.dns_name: ORG.txt.encode()}
    srv = start(fallback_kit, from_checker=FromChecker(lambda n, t: records.get(n.rstrip("."))))
    signed = ORG.sign(message(frm="Jane <jane@example.org>"))
    with smtplib.SMTP("127.0.0.1", srv.port) as c:
        c.ehlo()
        c.mail("jane@example.org")
        assert c.rcpt("unsubscribe@example.com")[0] == 250
        assert c.data(signed) == (250, b"unsubscribe recorded")
        # The same bytes with another From no longer verify.
        c.mail("john@example.org")
        c.rcpt("unsubscribe@example.com")
        forged = signed.replace(b"jane@example.org", b"john@example.org")
        code, text = c.data(forged)
        assert code == 550 and b"DKIM" in text
    out = fallback_kit.status("jane@example.org")
    assert all(e.opted_out for e in out.entries if e.purpose.commercial)
    assert not any(e.opted_out for e in out.entries if not e.purpose.commercial)
    assert [e.scope.kind.value for e in out.events] == ["bulk_email"]
    assert not marketing_out(fallback_kit, "john@example.org")


def test_from_fallback_dns_down_is_temporary(fallback_kit: Unsubkit, start: Callable[..., Running]) -> None:
    def down(name: str, timeout: float) -> bytes | None:
        raise TimeoutError("no resolver")

    srv = start(fallback_kit, from_checker=FromChecker(down))
    with smtplib.SMTP("127.0.0.1", srv.port) as c:
        c.ehlo()
        c.mail("jane@example.org")
        c.rcpt("unsubscribe@example.com")
        assert c.data(ORG.sign(message()))[0] == 451
    assert not marketing_out(fallback_kit, "jane@example.org")


def test_bound_socket_gets_tcp_nodelay_connections() -> None:
    # Without TCP_NODELAY on accepted connections, pipelined replies wait ~40 ms each for
    # delayed ACKs; asyncio sets it only when the listening socket says IPPROTO_TCP.
    sock = bind_socket("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP
    seen: list[int] = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            s = transport.get_extra_info("socket")
            seen.append(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()

    asyncio.run(main())
    assert seen and seen[0] != 0


def test_bind_socket_in_use_is_a_config_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError, match="cannot listen for mail"):
            bind_socket("127.0.0.1", busy.getsockname()[1])
