"""The DKIM signer, checked by dkimpy as the independent verifier."""

from __future__ import annotations

import base64
import re

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailcorpus import SAMPLES, verify_all
from unsubkit.clock import FrozenClock
from unsubkit.dkim import (
    DEFAULT_HEADERS,
    DKIMSigner,
    canonicalize_body,
    load_private_key,
    sign_message,
    txt_record,
)
from unsubkit.errors import DKIMError

CANONS = ["relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed"]


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def records(rsa_key: rsa.RSAPrivateKey, ed_key: ed25519.Ed25519PrivateKey) -> dict[str, str]:
    return {
        "r1._domainkey.example.com": txt_record(rsa_key),
        "e1._domainkey.example.com": txt_record(ed_key),
    }


def signers(rsa_key, ed_key, canon: str = "relaxed/relaxed", **kw) -> list[DKIMSigner]:
    return [
        DKIMSigner(rsa_key, domain="example.com", selector="r1", canonicalization=canon, **kw),
        DKIMSigner(ed_key, domain="example.com", selector="e1", canonicalization=canon, **kw),
    ]


EXTRA = {
    "folded_and_tabs": (
        b"From: a@example.com\r\nTo: b@example.org\r\n"
        b"Subject:   many    spaces\r\n\t and a folded\r\n   continuation  \r\n"
        b"X-Empty:\r\nDate: Thu, 01 Jan 2026 10:00:00 +0000\r\n\r\n"
        b"  leading\tand trailing \t \r\nmiddle  \t  runs\r\n\r\n \r\n\t\r\n\r\n"
    ),
    "empty_body": b"From: a@example.com\r\nSubject: nothing\r\n\r\n",
    "no_final_crlf": b"From: a@example.com\r\nSubject: x\r\n\r\nlast line without newline",
    "only_blank_lines": b"From: a@example.com\r\nSubject: x\r\n\r\n\r\n\r\n\r\n",
    "header_only": b"From: a@example.com\r\nSubject: no blank line\r\n",
    "repeated_headers": (
        b"From: a@example.com\r\nTo: one@example.org\r\nTo: two@example.org\r\n"
        b"Subject: x\r\nList-Unsubscribe: <https://e.example/u/1>\r\n\r\nbody\r\n"
    ),
}
CORPUS = {**{k: f() for k, f in SAMPLES.items()}, **EXTRA}


@pytest.mark.parametrize("canon", CANONS)
@pytest.mark.parametrize("name", sorted(CORPUS))
@pytest.mark.parametrize("lf", [False, True], ids=["crlf", "lf"])
def test_dual_signatures_verify_with_dkimpy(rsa_key, ed_key, records, canon, name, lf) -> None:
    message = CORPUS[name]
    message = message.replace(b"\r\n", b"\n") if lf else message.replace(b"\n", b"\r\n").replace(
        b"\r\r\n", b"\r\n"
    )
    signed = sign_message(message, signers(rsa_key, ed_key, canon))
    # Ours are the top two (a sample carries an old, unverifiable one further down).
    assert verify_all(signed, records)[:2] == [True, True]
    # The message itself is untouched: only the two fields were prepended.
    assert signed.endswith(message)
    assert signed.count(b"DKIM-Signature:") == message.count(b"DKIM-Signature:") + 2
    assert (b"\r\n" in signed) is (not lf)


def test_single_signer_sign_method_and_algorithms(rsa_key, ed_key, records) -> None:
    msg = CORPUS["plain_ascii"]
    for s in signers(rsa_key, ed_key):
        out = s.sign(msg)
        assert verify_all(out, records) == [True]
        field = out[: out.index(b"\r\nFrom: ")]
        assert f"a={s.algorithm}".encode() in field
    assert [s.algorithm for s in signers(rsa_key, ed_key)] == ["rsa-sha256", "ed25519-sha256"]


def _h_list(signed: bytes) -> list[str]:
    field = dkim.DKIM(signed).headers[0][1]
    h = re.search(rb"h=([^;]*);", field).group(1)
    return [n.strip().decode() for n in re.split(rb"\s*:\s*", h)]


def test_h_list_oversigns_every_name(rsa_key) -> None:
    msg = CORPUS["repeated_headers"]
    out = DKIMSigner(rsa_key, domain="example.com", selector="r1").sign(msg)
    names = [n.lower() for n in _h_list(out)]
    present = {"from": 1, "to": 2, "subject": 1, "list-unsubscribe": 1}
    for wanted in DEFAULT_HEADERS:
        assert names.count(wanted.lower()) == present.get(wanted.lower(), 0) + 1, wanted
    assert "list-unsubscribe-post" in names


def test_without_oversigning_absent_names_are_not_listed(rsa_key) -> None:
    msg = CORPUS["repeated_headers"]
    out = DKIMSigner(rsa_key, domain="example.com", selector="r1", oversign=False).sign(msg)
    names = [n.lower() for n in _h_list(out)]
    assert names.count("to") == 2 and names.count("from") == 1
    assert "cc" not in names and "list-unsubscribe-post" not in names


@pytest.mark.parametrize("inject", [
    b"List-Unsubscribe: <https://evil.example/u/x>\r\n",
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
    b"Reply-To: attacker@evil.example\r\n",
    b"Subject: second subject\r\n",
])
def test_added_fields_after_signing_break_both_signatures(rsa_key, ed_key, records, inject) -> None:
    msg = (
        b"From: a@example.com\r\nTo: b@example.org\r\nSubject: s\r\n"
        b"List-Unsubscribe: <https://example.com/u/T>\r\n"
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nbody\r\n"
    )
    signed = sign_message(msg, signers(rsa_key, ed_key))
    assert verify_all(signed, records) == [True, True]
    # Inserted right after the signatures, i.e. where a forwarder would put it.
    cut = signed.index(b"From: a@example.com")
    tampered = signed[:cut] + inject + signed[cut:]
    assert verify_all(tampered, records) == [False, False]
    appended = signed.replace(b"\r\n\r\nbody", b"\r\n" + inject.rstrip(b"\r\n") + b"\r\n\r\nbody")
    assert verify_all(appended, records) == [False, False]


def test_body_change_breaks_signature(rsa_key, ed_key, records) -> None:
    signed = sign_message(CORPUS["plain_ascii"], signers(rsa_key, ed_key))
    assert verify_all(signed.replace(b"Hello Jane", b"Hello Jone"), records) == [False, False]


@pytest.mark.parametrize("canon", ["simple", "relaxed"])
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_body_hash_matches_dkimpy(rsa_key, canon, name) -> None:
    """Our canonicalization and dkimpy's hash the same bytes."""
    msg = CORPUS[name].replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")
    pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    theirs = dkim.sign(msg, b"r1", b"example.com", pem, canonicalize=(canon.encode(), canon.encode()))
    ours = DKIMSigner(rsa_key, domain="example.com", selector="r1",
                      canonicalization=f"{canon}/{canon}").sign(msg)

    def bh(sig: bytes) -> bytes:
        return re.search(rb"bh=([A-Za-z0-9+/=]+)", sig).group(1)

    assert bh(ours) == bh(theirs)


def test_canonicalize_body_rules() -> None:
    body = b" a \t b  \r\n\t\r\nc\r\n\r\n\r\n"
    assert canonicalize_body(body, "relaxed") == b" a b\r\n\r\nc\r\n"
    assert canonicalize_body(body, "simple") == b" a \t b  \r\n\t\r\nc\r\n"
    assert canonicalize_body(b"", "simple") == b"\r\n"
    assert canonicalize_body(b"", "relaxed") == b""
    assert canonicalize_body(b"\r\n\r\n", "relaxed") == b""
    assert canonicalize_body(b"x  ", "relaxed") == b"x\r\n"


def test_timestamps_from_injected_clock(rsa_key, records) -> None:
    clock = FrozenClock(1_767_225_600)
    s = DKIMSigner(rsa_key, domain="example.com", selector="r1", clock=clock, expire_after=3600)
    out = s.sign(CORPUS["plain_ascii"])
    field = out[: out.index(b"\r\nFrom: ")]
    assert b"t=1767225600;" in field and b"x=1767229200;" in field
    # dkimpy checks x= against the real clock, for which this x= may be past: verify a
    # signature from the same frozen clock without x=.
    s2 = DKIMSigner(rsa_key, domain="example.com", selector="r1", clock=clock)
    assert verify_all(s2.sign(CORPUS["plain_ascii"]), records) == [True]


def test_identity_tag(rsa_key, records) -> None:
    s = DKIMSigner(rsa_key, domain="example.com", selector="r1", identity="news@mail.example.com")
    out = s.sign(CORPUS["plain_ascii"])
    assert b"i=news@mail.example.com;" in out
    assert verify_all(out, records) == [True]
    with pytest.raises(DKIMError):
        DKIMSigner(rsa_key, domain="example.com", selector="r1", identity="x@other.example")


def test_signature_field_lines_are_short(rsa_key, ed_key) -> None:
    out = sign_message(CORPUS["repeated_headers"], signers(rsa_key, ed_key))
    head = out[: out.index(b"\r\nFrom: ")]
    assert max(len(line) for line in head.split(b"\r\n")) <= 80


def test_rejects_weak_and_foreign_keys() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(DKIMError, match="2048"):
        DKIMSigner(weak, domain="example.com", selector="s")
    ecdsa = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(DKIMError, match="unsupported"):
        DKIMSigner(ecdsa, domain="example.com", selector="s")  # type: ignore[arg-type]
    pem = ecdsa.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    with pytest.raises(DKIMError, match="unsupported"):
        load_private_key(pem)


@pytest.mark.parametrize("kwargs", [
    {"domain": "not a domain", "selector": "s"},
    {"domain": "localhost", "selector": "s"},
    {"domain": "example.com", "selector": "bad selector"},
    {"domain": "example.com", "selector": "s", "canonicalization": "loose/simple"},
    {"domain": "example.com", "selector": "s", "headers": ["To", "Subject"]},
    {"domain": "example.com", "selector": "s", "headers": ["From", "Bad:Name"]},
    {"domain": "example.com", "selector": "s", "expire_after": 60},
])
def test_bad_options_are_clear_errors(ed_key, kwargs) -> None:
    with pytest.raises(DKIMError):
        DKIMSigner(ed_key, **kwargs)


def test_unicode_domain_becomes_a_label(ed_key) -> None:
    s = DKIMSigner(ed_key, domain="Bücher.example", selector="s")
    assert s.domain == "xn--bcher-kva.example"
    assert s.dns_name == "s._domainkey.xn--bcher-kva.example"


def test_unsignable_input_is_a_clear_error(ed_key) -> None:
    s = DKIMSigner(ed_key, domain="example.com", selector="s")
    with pytest.raises(DKIMError):
        s.sign(b"\r\nbody without header fields\r\n")
    with pytest.raises(DKIMError):
        s.sign(b"not a header line\r\nFrom: a@example.com\r\n\r\nx\r\n")
    with pytest.raises(DKIMError):
        s.sign("text, not bytes")  # type: ignore[arg-type]
    with pytest.raises(DKIMError, match="From"):
        DKIMSigner(ed_key, domain="example.com", selector="s", oversign=False).sign(
            b"Subject: no sender\r\n\r\nx\r\n")


def test_load_private_key_never_echoes_input() -> None:
    secret = b"-----BEGIN PRIVATE KEY-----\nSECRETSECRET\n-----END PRIVATE KEY-----\n"
    with pytest.raises(DKIMError) as err:
        load_private_key(secret)
    assert "SECRET" not in str(err.value)


def test_txt_records(rsa_key, ed_key) -> None:
    rec = txt_record(rsa_key)
    assert rec.startswith("v=DKIM1; k=rsa; p=")
    der = base64.b64decode(rec.split("p=", 1)[1])
    assert serialization.load_der_public_key(der).public_numbers() == \
        rsa_key.public_key().public_numbers()
    rec = txt_record(ed_key.public_key())
    assert rec.startswith("v=DKIM1; k=ed25519; p=")
    raw = base64.b64decode(rec.split("p=", 1)[1])
    assert len(raw) == 32  # RFC 8463: the bare key
    assert raw == ed_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                   serialization.PublicFormat.Raw)


def test_repr_shows_no_key_material(rsa_key) -> None:
    s = DKIMSigner(rsa_key, domain="example.com", selector="r1")
    assert repr(s) == "DKIMSigner(rsa-sha256, d=example.com, s=r1)"


def test_no_signers_returns_message_unchanged() -> None:
    assert sign_message(CORPUS["plain_ascii"], []) == CORPUS["plain_ascii"]


def test_unterminated_last_line_is_signed_as_it_arrives(ed_key, records) -> None:
    """SMTP always ends the data with CRLF, so an unterminated last line with trailing
    blanks is canonicalized as the receiver will see it: blanks removed (RFC 6376 3.4.4)."""
    msg = b"From: a@example.com\r\nSubject: x\r\n\r\nlast line  "
    out = DKIMSigner(ed_key, domain="example.com", selector="e1").sign(msg)
    assert verify_all(out + b"\r\n", records) == [True]


def test_mixed_line_endings_come_back_as_crlf(ed_key, records) -> None:
    msg = b"From: a@example.com\r\nSubject: mixed\n\r\nline one\nline two\r\n"
    out = DKIMSigner(ed_key, domain="example.com", selector="e1").sign(msg)
    assert b"\n" not in out.replace(b"\r\n", b"")
    assert verify_all(out, records) == [True]


_line = st.text(alphabet=st.sampled_from(list("ab \t.=éÜ-")), max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(_line, max_size=8),
    subject=_line,
    sep=st.sampled_from(["\r\n", "\n"]),
    canon=st.sampled_from(CANONS),
    trailing=st.integers(min_value=0, max_value=3),
)
def test_generated_messages_verify(ed_key, records, lines, subject, sep, canon, trailing) -> None:
    body = "".join(line + sep for line in lines) + sep * trailing
    msg = f"From: a@example.com{sep}Subject: x{subject}{sep}{sep}{body}".encode()
    out = DKIMSigner(ed_key, domain="example.com", selector="e1", canonicalization=canon).sign(msg)
    assert verify_all(out, records) == [True]
