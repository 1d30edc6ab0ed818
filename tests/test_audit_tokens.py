"""The checker opens unsubkit's own tokens when a local key ring is at hand."""

from __future__ import annotations

from _audit_support import fixture
from unsubkit.audit import CheckOptions, OwnTokens, check_message
from unsubkit.clock import FrozenClock, to_datetime
from unsubkit.headers import UnsubscribeHeaders, body_url, mailto_address, mailto_uri, one_click_url
from unsubkit.tokens import Claims, KeyRing, TokenCodec, new_key

BASE = "https://unsub.example.com"
TOK = b"K7hZ2kLmN4pQ9rS1"


def codec(clock: FrozenClock) -> TokenCodec:
    return TokenCodec(KeyRing([new_key(clock())]), clock=clock)


def message(header_token: str, body_token: str | None = None) -> bytes:
    """The compliant fixture, with real tokens in place of its placeholder."""
    h = UnsubscribeHeaders(
        url=one_click_url(BASE, header_token),
        mailto=mailto_uri(mailto_address("unsubscribe@example.com", header_token)),
    )
    raw = fixture("compliant.eml")
    start = raw.index(b"List-Unsubscribe:")
    end = raw.index(b"\r\n", raw.index(b"List-Unsubscribe-Post:")) + 2
    raw = raw[:start] + h.lines().encode() + raw[end:]  # both fields, as unsubkit builds them
    return raw.replace(b"https://unsub.example.com/p/" + TOK, body_url(BASE, body_token or header_token).encode())


def own(c: TokenCodec) -> OwnTokens:
    names = {1: "marketing", 2: "transactional"}
    return OwnTokens(opener=c, base_urls=(BASE,), mailto_addresses=("unsubscribe@example.com",),
                     purpose_name=names.get, topic_name={7: "weekly"}.get)


def findings(raw: bytes, c: TokenCodec, clock: FrozenClock) -> list[tuple[str, str]]:
    report = check_message(raw, CheckOptions(tokens=own(c), clock=clock))
    return [(f.code, f.detail) for f in report.findings if f.code.startswith("LU4")]


def test_token_opens_with_brand_purpose_topic_and_expiry() -> None:
    clock = FrozenClock()
    c = codec(clock)
    token = c.seal(Claims(address="jane@example.org", purpose_id=1, topic_id=7))
    report = check_message(message(token), CheckOptions(tokens=own(c), clock=clock))
    opens = [f for f in report.findings if f.code == "LU400"]
    assert len(opens) == 1
    data = opens[0].data_dict
    assert data["brand"] == "default" and data["purpose"] == "marketing" and data["topic"] == "weekly"
    assert data["address"] == "j***@example.org"  # never the whole address
    assert data["expires"] == to_datetime(clock() + 180 * 86400).isoformat()
    assert {"List-Unsubscribe", "text body", "HTML body"} <= set(data["found_in"].split(", "))
    assert "jane@example.org" not in str(report.to_dict())
    assert [f.code for f in report.errors] == ["LU100"]  # unsigned here; the token itself is fine


def test_token_from_another_ring_does_not_open() -> None:
    clock = FrozenClock()
    other = codec(clock).seal(Claims(address="jane@example.org", purpose_id=1))
    got = findings(message(other), codec(clock), clock)
    assert {code for code, _ in got} == {"LU401"}
    assert any("unknown key" in detail for _, detail in got)


def test_expired_token() -> None:
    clock = FrozenClock()
    c = codec(clock)
    token = c.seal(Claims(address="jane@example.org", purpose_id=1))
    clock.advance(181 * 86400)
    got = findings(message(token), c, clock)
    assert {code for code, _ in got} == {"LU402"}


def test_header_and_body_tokens_disagree() -> None:
    clock = FrozenClock()
    c = codec(clock)
    jane = c.seal(Claims(address="jane@example.org", purpose_id=1))
    john = c.seal(Claims(address="john@example.org", purpose_id=1))
    got = findings(message(jane, body_token=john), c, clock)
    assert sorted(code for code, _ in got) == ["LU400", "LU400", "LU403"]


def test_no_token_of_ours() -> None:
    clock = FrozenClock()
    got = findings(fixture("esp-mailchimp.eml"), codec(clock), clock)
    assert got == [("LU404", "no URI points at https://unsub.example.com")]
