"""The checker over the fixture corpus: a compliant message, one message per fault, and
messages shaped like the headers SendGrid, Mailchimp, SES and listmonk document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from _audit_support import FIXTURES, ed_key, ed_record, fixture, keys_for, rsa_key, rsa_record, sign
from unsubkit.audit import RULES, CheckOptions, Severity, StaticKeys, Verdict, all_codes, check_message
from unsubkit.audit.message import parse_message

ROOT = Path(__file__).resolve().parents[1]

#: fixture -> the exact set of codes, once signed correctly (both fields, oversigned) by the From domain.
EXPECTED: dict[str, set[str]] = {
    "compliant.eml": set(),
    "missing-list-unsubscribe.eml": {"LU001", "LU302"},
    "duplicate-list-unsubscribe.eml": {"LU002"},
    "missing-post.eml": {"LU003"},
    "duplicate-post.eml": {"LU004"},
    "post-without-list-unsubscribe.eml": {"LU001", "LU005", "LU302"},
    "unbracketed.eml": {"LU010"},
    "space-inside.eml": {"LU011"},
    "folded-inside.eml": {"LU011"},
    "no-comma.eml": {"LU012"},
    "empty-list-unsubscribe.eml": {"LU013"},
    "no-https.eml": {"LU020", "LU061"},
    "two-https.eml": {"LU021"},
    "plain-http.eml": {"LU020", "LU022"},
    "no-mailto.eml": {"LU023"},
    "address-in-url.eml": {"LU024"},
    "eight-bit.eml": {"LU025", "LU051"},
    "invalid-mailto.eml": {"LU030"},
    "wrong-post-value.eml": {"LU040"},
    "encoded-words.eml": {"LU050", "LU061"},
    "line-over-998.eml": {"LU060"},
    "line-over-78.eml": {"LU061"},
    "body-line-over-998.eml": {"LU062"},
    "no-from.eml": {"LU107"},
    "no-body-link.eml": {"LU200"},
    "html-without-link.eml": {"LU201"},
    "unrelated-body-link.eml": {"LU202"},
    "receipt-with-headers.eml": {"LU300"},
    "password-reset-without-headers.eml": {"LU301"},
    # SendGrid subscription tracking: mailto first, https on the link-branding domain, Post.
    "esp-sendgrid.eml": {"LU061"},
    # SendGrid's older documentation example: an http URL and no Post field.
    "esp-sendgrid-legacy-doc.eml": {"LU003", "LU020", "LU022"},
    "esp-mailchimp.eml": {"LU061"},
    # SES's reference architecture puts the address into the URL.
    "esp-ses.eml": {"LU024", "LU061"},
    # listmonk sends one https URL and no mailto.
    "esp-listmonk.eml": {"LU023", "LU061"},
}


def signed_report(name: str, **sign_kw: object) -> tuple[set[str], object]:
    raw = fixture(name)
    domain = parse_message(raw).from_domain or "example.com"
    signed = sign(raw, domain=domain, **sign_kw)  # type: ignore[arg-type]
    report = check_message(signed, CheckOptions(keys=keys_for(("sel", domain, rsa_record(rsa_key())))))
    return set(report.codes), report


def test_every_fixture_has_an_expectation() -> None:
    assert {p.name for p in FIXTURES.glob("*.eml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_codes(name: str) -> None:
    codes, report = signed_report(name)
    assert codes == EXPECTED[name], report.findings  # type: ignore[attr-defined]
    assert "LU999" not in codes


def test_compliant_verdict_and_single_faults_fail() -> None:
    _, report = signed_report("compliant.eml")
    assert report.verdict is Verdict.PASS  # type: ignore[attr-defined]
    _, report = signed_report("missing-post.eml")
    assert report.verdict is Verdict.FAIL  # type: ignore[attr-defined]
    assert report.errors[0].fix.startswith("Add `List-Unsubscribe-Post")  # type: ignore[attr-defined]


# -- DKIM, each fault on the compliant message ------------------------------------------------

def check_with(raw: bytes, keys: StaticKeys | None) -> set[str]:
    return set(check_message(raw, CheckOptions(keys=keys)).codes)


def own_key() -> StaticKeys:
    return keys_for(("sel", "example.com", rsa_record(rsa_key())))


def test_unsigned() -> None:
    assert check_with(fixture("compliant.eml"), own_key()) == {"LU100"}


def test_dkimpy_default_h_leaves_post_out() -> None:
    raw = sign(fixture("compliant.eml"), fields=None)
    codes = check_with(raw, own_key())
    assert codes == {"LU101"}


def test_covered_but_not_oversigned() -> None:
    raw = sign(fixture("compliant.eml"), oversign=False)
    assert check_with(raw, own_key()) == {"LU102"}


def test_signature_by_another_key_fails() -> None:
    raw = sign(fixture("compliant.eml"), key=rsa_key(1))
    assert check_with(raw, own_key()) == {"LU103", "LU106"}


def test_no_key_source_only_inspects() -> None:
    raw = sign(fixture("compliant.eml"))
    assert check_with(raw, None) == {"LU104"}


def test_key_missing_for_selector() -> None:
    raw = sign(fixture("compliant.eml"), selector="other")
    assert check_with(raw, own_key()) == {"LU105"}


def test_third_party_domain_only() -> None:
    raw = sign(fixture("compliant.eml"), domain="esp.example.net")
    keys = keys_for(("sel", "esp.example.net", rsa_record(rsa_key())))
    assert check_with(raw, keys) == {"LU106"}


def test_subdomain_signature_is_aligned() -> None:
    raw = sign(fixture("compliant.eml"), domain="mail.example.com")
    keys = keys_for(("sel", "mail.example.com", rsa_record(rsa_key())))
    assert check_with(raw, keys) == set()


def test_fields_covered_only_by_the_esp_signature() -> None:
    raw = fixture("compliant.eml")
    esp = sign(raw, domain="esp.example.net", selector="esp")
    both = sign(esp, fields=("from", "to", "subject", "date"), oversign=True)
    keys = keys_for(("sel", "example.com", rsa_record(rsa_key())), ("esp", "esp.example.net", rsa_record(rsa_key())))
    assert check_with(both, keys) == {"LU108"}


def test_second_list_unsubscribe_added_after_signing_breaks_the_signature() -> None:
    raw = sign(fixture("compliant.eml"))
    extra = b"List-Unsubscribe: <https://evil.example.net/x>\r\n"
    tampered = raw.replace(b"List-Unsubscribe-Post:", extra + b"List-Unsubscribe-Post:", 1)
    codes = check_with(tampered, own_key())
    assert {"LU002", "LU103"} <= codes


def test_not_oversigned_signature_survives_an_added_field_but_oversigned_does_not() -> None:
    # Why oversigning matters: the extra field is added *above* the signed ones.
    plain = sign(fixture("compliant.eml"), oversign=False)
    extra = b"List-Unsubscribe: <https://evil.example.net/x>\r\n"
    tampered = plain.replace(b"To:", extra + b"To:", 1)
    assert "LU103" not in check_with(tampered, own_key())
    over = sign(fixture("compliant.eml"))
    assert "LU103" in check_with(over.replace(b"To:", extra + b"To:", 1), own_key())


def test_malformed_signature_beside_a_good_one() -> None:
    raw = sign(fixture("compliant.eml"))
    bad = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; h=from; b=AAAA\r\n"
    assert check_with(bad + raw, own_key()) == {"LU109"}


def test_ed25519_signature_verifies() -> None:
    raw = sign(fixture("compliant.eml"), ed25519_key=ed_key())
    assert check_with(raw, keys_for(("sel", "example.com", ed_record(ed_key())))) == set()
    assert check_with(raw, own_key()) == {"LU103", "LU106"}


def test_body_changed_after_signing() -> None:
    raw = sign(fixture("compliant.eml")).replace(b"three new recipes", b"four new recipes", 1)
    assert check_with(raw, own_key()) == {"LU103", "LU106"}


# -- the rule table ----------------------------------------------------------------------------

def test_codes_are_unique_stable_and_documented() -> None:
    infos = all_codes()
    codes = [i.code for i in infos]
    assert len(codes) == len(set(codes))
    assert all(re.fullmatch(r"LU\d{3}", c) for c in codes)
    for info in infos:
        assert info.fix.endswith((".", ")")) and info.title
        assert isinstance(info.severity, Severity)
    doc = (ROOT / "docs" / "checker.md").read_text()
    table = dict(re.findall(r"^\| (LU\d{3}) \| (\w+) \|", doc, re.MULTILINE))
    assert table == {i.code: i.severity.value for i in infos}
    assert len(RULES) >= 15


def test_findings_sorted_most_severe_first() -> None:
    _, report = signed_report("esp-sendgrid-legacy-doc.eml")
    ranks = [f.severity.rank for f in report.findings]  # type: ignore[attr-defined]
    assert ranks == sorted(ranks)
    d = report.to_dict()  # type: ignore[attr-defined]
    assert d["verdict"] == "fail" and d["counts"]["error"] == 2
    assert {f["code"] for f in d["findings"]} == {"LU003", "LU020", "LU022"}
