"""Pure mailto decisions: our addresses, replies, message facts, bounces."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mail_support import APPLE, dsn, message
from unsubkit.consent.model import Mechanism, Reason, ScopeKind, Source
from unsubkit.mail.mailto import (
    Directory,
    Mailbox,
    Replies,
    Reply,
    Target,
    drop_reason,
    fallback_changes,
    header_block,
    is_null_sender,
    read_facts,
    request_meta,
)
from unsubkit.settings import Brand, Settings


def directory(**brands: Any) -> Directory:
    s = Settings(mailto_address="unsubscribe@example.com",
                 brands={k: Brand(**v) for k, v in brands.items()})
    return Directory.from_settings(s)


def test_token_address_is_ours_and_keeps_token_case() -> None:
    d = directory()
    assert d.lookup("unsubscribe+AbC-_9@example.com") == Target("default", "AbC-_9", False)
    # Local part and domain compare without case; the token keeps its case.
    assert d.lookup("UnSubscribe+AbC@EXAMPLE.com.") == Target("default", "AbC", False)


def test_foreign_domain_is_relay_denied() -> None:
    d = directory()
    assert d.lookup("unsubscribe+abc@example.net") is Replies.RELAY_DENIED
    assert str(Replies.RELAY_DENIED) == "550 relay denied"


def test_other_local_part_in_our_domain_is_no_such_user() -> None:
    d = directory()
    assert d.lookup("postmaster@example.com") is Replies.NO_SUCH_USER
    assert d.lookup("unsubscribex+abc@example.com") is Replies.NO_SUCH_USER
    assert d.lookup("no-at-sign") is Replies.NO_SUCH_USER


def test_empty_token_is_invalid() -> None:
    assert directory().lookup("unsubscribe+@example.com") is Replies.TOKEN_INVALID


def test_bare_address_needs_the_fallback() -> None:
    assert directory().lookup("unsubscribe@example.com") is Replies.NEEDS_TOKEN
    d = directory(default={"mailto_from_fallback": True})
    assert d.lookup("unsubscribe@example.com") == Target("default", None, True)


def test_brand_domains_are_ours_too() -> None:
    d = directory(news={"mailto": "optout@news.example.org", "domains": ["example.org", "Mail.Example.org"]})
    assert d.lookup("optout+t1@news.example.org") == Target("news", "t1", False)
    assert d.lookup("optout+t1@mail.example.org") == Target("news", "t1", False)
    # The default brand's local part is not valid in the news brand's domains.
    assert d.lookup("unsubscribe+t1@example.org") is Replies.NO_SUCH_USER
    assert d.lookup("unsubscribe+t1@example.com") == Target("default", "t1", False)
    assert {"example.com", "news.example.org", "example.org", "mail.example.org"} <= d.domains


def test_brand_without_mailto_still_owns_its_domains() -> None:
    d = directory(shop={"mailto": False, "domains": ["shop.example"]})
    assert d.lookup("unsubscribe+t@shop.example") is Replies.NO_SUCH_USER


def test_longest_local_part_wins() -> None:
    d = Directory([Mailbox("a", "unsub", "x.example"), Mailbox("b", "unsub+news", "x.example")])
    assert d.lookup("unsub+news+T@x.example") == Target("b", "T", False)
    assert d.lookup("unsub+T@x.example") == Target("a", "T", False)


def test_reply_properties() -> None:
    assert Replies.UNSUBSCRIBED.ok and not Replies.UNSUBSCRIBED.temporary
    assert Replies.TRY_LATER.temporary and not Replies.TRY_LATER.ok
    assert str(Reply(552, "too big")) == "552 too big"


def test_apple_mail_form_is_recognized_and_not_dropped() -> None:
    facts = read_facts(message(extra=APPLE))
    assert facts.apple
    assert facts.auto_submitted == "auto-replied"
    assert facts.subject == "unsubscribe"
    # Auto-Submitted alone never drops a message: Apple's form carries it.
    assert drop_reason("jane@example.org", facts) is None
    assert request_meta("127.0.0.1", facts).user_agent == "mailto; Apple Mail (X-Apple-Unsubscribe)"


def test_bounces_and_reports_are_dropped() -> None:
    plain = read_facts(message())
    assert drop_reason("<>", plain) == "null reverse-path"
    assert drop_reason("", plain) == "null reverse-path"
    report = read_facts(dsn("unsubscribe+x@example.com"))
    assert report.content_type == "multipart/report"
    assert report.report_type == "delivery-status"
    assert drop_reason("postmaster@mx.example.net", report) == "multipart/report (delivery-status)"


def test_null_sender_versus_unknown() -> None:
    assert is_null_sender("<>") and is_null_sender("") and is_null_sender(" ")
    assert not is_null_sender(None)
    assert not is_null_sender("jane@example.org")


def test_agent_is_cleaned_and_truncated() -> None:
    facts = read_facts(message(extra="User-Agent: Mutt\x01 " + "x" * 500 + "\r\n"))
    assert facts.agent is not None and len(facts.agent) <= 200
    assert "\x01" not in facts.agent


def test_header_block_stops_at_blank_line() -> None:
    assert header_block(b"A: 1\nB: 2\n\nbody") == b"A: 1\nB: 2\n\n"
    assert header_block(b"A: 1\r\n\r\nbody\n\nmore") == b"A: 1\n\n"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_garbage_never_raises(data: bytes) -> None:
    facts = read_facts(data)
    assert isinstance(facts.subject, str)
    assert drop_reason("a@b.example", facts) in (None, f"multipart/report ({facts.report_type or 'unknown type'})")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_lookup_of_any_string_gives_target_or_reply(address: str) -> None:
    assert isinstance(directory().lookup(address), Target | Reply)


def test_fallback_changes_stop_all_bulk_email() -> None:
    (ch,) = fallback_changes("jane@example.org", "default", request_meta(None, read_facts(message())))
    assert ch.scope.kind is ScopeKind.BULK_EMAIL
    assert (ch.source, ch.reason, ch.mechanism) == (Source.MAILTO, Reason.MAILTO, Mechanism.MAILTO)
    assert ch.meta.user_agent == "mailto"
