"""The checker reads broken real-world mail: it must never crash, whatever the bytes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _audit_support import CORPUS, fixture
from unsubkit.audit import CheckOptions, OwnTokens, StaticKeys, check_message
from unsubkit.tokens import KeyRing, TokenCodec, new_key

SNIPPETS = [b"<", b">", b",", b"\r\n ", b"=?utf-8?q?", b"\x00", b"\r\n\r\n", b"--"]
KEYS = StaticKeys({"sel._domainkey.example.com": "v=DKIM1; k=rsa; p=garbage"})
TOKENS = OwnTokens(TokenCodec(KeyRing([new_key(0.0)])), ("https://unsub.example.com",), ("unsubscribe@example.com",))
OPTIONS = CheckOptions(keys=KEYS, tokens=TOKENS)

HEADER_NAMES = ["From", "To", "Subject", "List-Unsubscribe", "List-Unsubscribe-Post", "DKIM-Signature",
                "Content-Type", "Content-Transfer-Encoding", "MIME-Version", "X-Junk"]
junk_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120)
header = st.tuples(st.sampled_from(HEADER_NAMES), junk_text).map(lambda t: f"{t[0]}:{t[1]}")
structured = st.builds(
    lambda hs, sep, body: (sep.join(hs) + sep + sep + body).encode("utf-8", "surrogateescape"),
    st.lists(header, max_size=12), st.sampled_from(["\r\n", "\n", "\r"]), junk_text,
)


def assert_survives(raw: bytes) -> None:
    report = check_message(raw, OPTIONS)
    assert "LU999" not in report.codes, report.findings
    assert report.verdict.value in ("pass", "warn", "fail")
    report.to_dict()


@given(st.binary(max_size=3000))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_random_bytes(raw: bytes) -> None:
    assert_survives(raw)


@given(structured)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_random_header_sections(raw: bytes) -> None:
    assert_survives(raw)


@given(st.data())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_real_messages(data: st.DataObject) -> None:
    names = sorted(p.name for p in CORPUS.glob("*.eml"))[:6]
    if data.draw(st.booleans()):
        raw = bytearray(fixture("compliant.eml"))
    else:
        raw = bytearray((CORPUS / data.draw(st.sampled_from(names))).read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos : pos + data.draw(st.integers(1, 200))]
        else:
            raw[pos:pos] = data.draw(st.sampled_from(SNIPPETS))
        if not raw:
            break
    assert_survives(bytes(raw))


def test_empty_and_headerless_input_is_not_a_message() -> None:
    for raw in (b"", b"\r\n\r\nbody only", b"\x00\x01\x02"):
        report = check_message(raw)
        assert report.codes == ["LU900"]
        assert report.verdict.value == "fail"
