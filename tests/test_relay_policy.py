"""The relay's pure parts: control fields, the one-reply-for-many-copies table, the retry
ledger, bounces and the client allow-list."""

from __future__ import annotations

import email
import email.policy

import pytest

from unsubkit.cli.relay import parse_hostport
from unsubkit.clock import FrozenClock
from unsubkit.errors import ConfigError, MessageError
from unsubkit.relay.dsn import build_dsn
from unsubkit.relay.handler import client_allowed
from unsubkit.relay.ledger import RetryLedger, transaction_key
from unsubkit.relay.policy import Delivery, settle, split_control, verdict
from unsubkit.relay.server import parse_networks

OK = Delivery("a@example.org", 250, "2.0.0 Ok: queued")
OK2 = Delivery("b@example.org", 250, "Ok")
TEMP = Delivery("c@example.org", 451, "4.3.0 try later", temporary=True)
PERM = Delivery("d@example.org", 550, "5.1.1 <d@example.org>: user unknown")


def test_control_fields_are_read_and_removed_byte_for_byte() -> None:
    data = (
        b"From: a@example.com\r\nX-Unsubkit-Purpose: marketing\r\nx-unsubkit-topic:  weekly \r\n"
        b"X-UNSUBKIT-BRAND:\r\n shop\r\nX-Unsubkit-Purpose: marketing\r\nX-Unsubkit-Other: 1\r\n"
        b"Subject: a long subject\r\n\tfolded =?utf-8?q?kept?=\r\n\r\nbody\r\nX-Unsubkit-Purpose: body\r\n"
    )
    sub = split_control(data)
    c = sub.control
    assert (c.purpose, c.topic, c.brand) == ("marketing", "weekly", "shop")
    assert sub.stripped == 5
    assert sub.data == (
        b"From: a@example.com\r\nSubject: a long subject\r\n\tfolded =?utf-8?q?kept?=\r\n"
        b"\r\nbody\r\nX-Unsubkit-Purpose: body\r\n"
    )
    assert sub.fields["from"] == ["a@example.com"]
    plain = b"From: a@example.com\nSubject: x\n\nbody\n"
    assert split_control(plain).data is plain  # nothing to strip: the very same bytes
    lf = split_control(b"From: a@example.com\nX-Unsubkit-Purpose: p\n\nbody\n")
    assert lf.data == b"From: a@example.com\n\nbody\n" and lf.control.purpose == "p"


def test_conflicting_control_fields_and_headless_input_are_errors() -> None:
    with pytest.raises(MessageError, match="different values"):
        split_control(b"From: a@example.com\r\nX-Unsubkit-Purpose: a\r\nX-Unsubkit-Purpose: b\r\n\r\nx\r\n")
    with pytest.raises(MessageError, match="no header"):
        split_control(b"just some text\r\n")


def test_delivery_status_and_reason() -> None:
    assert PERM.status == "5.1.1" and PERM.reason == "<d@example.org>: user unknown"
    assert TEMP.status == "4.3.0"
    assert Delivery("x", 550, "no enhanced code").status == "5.0.0"
    assert Delivery("x", 451, "2.0.0 mismatched class", temporary=True).status == "4.4.0"
    assert "\r" not in Delivery("x", 550, "a\r\nb").reason


@pytest.mark.parametrize(
    ("deliveries", "suppressed", "already", "code", "remember", "bounce"),
    [
        ([], 1, 0, 550, (), ()),  # every recipient opted out
        ([], 3, 0, 550, (), ()),
        ([OK, OK2], 1, 0, 250, (), ()),  # some suppressed: still 250
        ([OK, TEMP], 0, 0, 451, ("a@example.org",), ()),  # partial: remember the sent one
        ([OK, TEMP, PERM], 0, 0, 451, ("a@example.org",), ()),  # any temporary failure defers
        ([PERM], 0, 0, 550, (), ()),  # nothing sent: the upstream's refusal
        ([OK, PERM], 0, 0, 250, (), (PERM,)),  # some sent: accept and bounce the rest
        ([PERM], 0, 1, 250, (), (PERM,)),  # sent by the earlier attempt
        ([], 0, 2, 250, (), ()),  # the retry finds everything already sent
    ],
)
def test_one_reply_for_the_transaction(deliveries, suppressed, already, code, remember, bounce) -> None:
    v = verdict(deliveries, suppressed=suppressed, already_sent=already)
    assert v.reply.code == code
    assert v.remember == remember
    assert v.bounce == bounce


def test_upstream_codes_pass_through_or_map() -> None:
    assert verdict([Delivery("x", 552, "5.3.4 too big")], suppressed=0).reply.code == 552
    assert str(verdict([Delivery("x", 500, "syntax")], suppressed=0).reply).startswith("554 5.0.0")
    temp = verdict([Delivery("x", 421, "4.7.0 closing", temporary=True)], suppressed=0).reply
    assert str(temp).startswith("451 4.7.0 upstream deferred: closing")


def test_a_bounce_deferred_for_now_defers_the_transaction() -> None:
    v = verdict([OK, PERM], suppressed=0)
    assert settle(v, None, forwarded=["a@example.org"]) is v
    assert settle(v, Delivery("s", 250, "ok"), forwarded=["a@example.org"]) is v
    assert settle(v, Delivery("s", 550, "no"), forwarded=["a@example.org"]) is v  # dropped, like MTAs do
    later = settle(v, Delivery("s", 451, "later", temporary=True), forwarded=["a@example.org"])
    assert later.reply.code == 451 and later.remember == ("a@example.org",)


def test_ledger_remembers_merges_expires_and_is_bounded() -> None:
    clock = FrozenClock(1000.0)
    ledger = RetryLedger(ttl=60, clock=clock, max_entries=2)
    k1, k2, k3 = (transaction_key("s@example.com", b"m%d" % i) for i in range(3))
    assert k1 != transaction_key("t@example.com", b"m0")
    ledger.remember(k1, ["A@example.org"])
    ledger.remember(k1, ["b@example.org"])
    assert ledger.sent(k1) == {"a@example.org", "b@example.org"}
    ledger.remember(k2, ["c@example.org"])
    ledger.remember(k3, ["d@example.org"])
    assert len(ledger) == 2 and ledger.sent(k1) == frozenset()  # the oldest went first
    clock.advance(61)
    assert ledger.sent(k2) == frozenset() and len(ledger) == 0
    ledger.remember(k3, ["d@example.org"])
    ledger.forget(k3)
    assert ledger.sent(k3) == frozenset()


def test_dsn_is_a_well_formed_delivery_report() -> None:
    original = b"From: a@example.com\r\nSubject: Offer\r\nMessage-ID: <m@example.com>\r\n\r\nsecret body\r\n"
    raw = build_dsn(original, sender="a@example.com", failures=[PERM], reporting_mta="relay.test", now=0)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    types = [p.get_content_type() for p in msg.iter_parts()]
    assert types == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert b"Final-Recipient: rfc822; d@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n" in raw
    assert b"Message-ID: <m@example.com>" in raw and b"secret body" not in raw
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_client_allow_list() -> None:
    nets = parse_networks(["127.0.0.0/8", "::1", "10.1.0.0/16"])
    assert client_allowed(("127.0.0.1", 5000), nets)
    assert client_allowed(("::ffff:10.1.2.3", 5000, 0, 0), nets)
    assert client_allowed(("::1", 5000, 0, 0), nets)
    assert not client_allowed(("10.2.0.1", 5000), nets)
    assert not client_allowed(None, nets)
    with pytest.raises(ConfigError, match="not an IP network"):
        parse_networks(["localhost"])


def test_hostport() -> None:
    assert parse_hostport("127.0.0.1:25", what="x") == ("127.0.0.1", 25)
    assert parse_hostport("[::1]:2526", what="x") == ("::1", 2526)
    for bad in ("host", ":25", "h:99999", "h:x"):
        with pytest.raises(ConfigError):
            parse_hostport(bad, what="--upstream")
