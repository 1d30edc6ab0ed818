"""The checker over 26 real newsletters (2023, 13 ESPs): specific, sensible findings."""

from __future__ import annotations

import pytest

from _audit_support import CORPUS
from unsubkit.audit import check_message

FILES = sorted(CORPUS.glob("*.eml"))


def codes(prefix: str) -> list[set[str]]:
    found = [p for p in FILES if p.name.startswith(prefix)]
    assert found, prefix
    return [set(check_message(p.read_bytes(), source=p.name).codes) for p in found]


def test_corpus_is_there() -> None:
    assert len(FILES) == 26


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_message_trips_the_checker(path) -> None:  # type: ignore[no-untyped-def]
    report = check_message(path.read_bytes(), source=path.name)
    assert "LU999" not in report.codes and "LU900" not in report.codes
    assert report.subject and report.from_
    assert "LU104" in report.codes or "LU100" in report.codes  # no keys offline: never "verified"


@pytest.mark.parametrize("esp", ["convertkit", "klaviyo"])
def test_missing_post_field(esp: str) -> None:
    for c in codes(esp):
        assert "LU003" in c


def test_malformed_post_value() -> None:
    for c in codes("elaine"):  # "ListUnsubscribe=One-Click"
        assert "LU040" in c and "LU003" not in c


@pytest.mark.parametrize("esp", ["fairmailing", "klaviyo"])
def test_encoded_words_in_list_unsubscribe(esp: str) -> None:
    for c in codes(esp):
        assert "LU050" in c


def test_unbracketed_spaced_http_only() -> None:
    for c in codes("optimizely"):
        assert {"LU010", "LU011", "LU020", "LU022"} <= c


def test_unsigned() -> None:
    for c in codes("fairmailing"):
        assert "LU100" in c


def test_signed_only_by_the_esp_or_another_domain() -> None:
    # katjes.de signed by klaviyomail.com; casida.de signed by casida.com; diakonie-freiburg.de by crsend.com.
    for prefix in ("klaviyo", "cleverreach"):
        for c in codes(prefix):
            assert "LU106" in c


def test_aligned_signatures_are_accepted() -> None:
    for prefix in ("mailchimp", "inxmail", "newsletter2go", "sendinblue", "getresponse", "elaine"):
        for c in codes(prefix):
            assert "LU106" not in c and "LU101" not in c


def test_oversigning_is_rare_and_getresponse_does_it() -> None:
    for c in codes("getresponse"):
        assert "LU102" not in c
        assert not {x for x in c if x < "LU100"} - {"LU061"}  # header syntax clean
    for prefix in ("mailchimp", "inxmail", "sendinblue", "newsletter2go"):
        for c in codes(prefix):
            assert "LU102" in c


def test_body_links_found_in_german_newsletters() -> None:
    # "Klicke HIER, um dich abzumelden", "... hier abbestellen", footnoted "Newsletter abbestellen [1]".
    for prefix in ("cleverreach", "optimizely", "mailchimp", "inxmail", "sendinblue"):
        for c in codes(prefix):
            assert "LU200" not in c and "LU201" not in c, prefix


def test_verdicts() -> None:
    verdicts = {p.name: check_message(p.read_bytes()).verdict.value for p in FILES}
    assert verdicts["getresponse--2023-01-06-vfl-bochum.u1.eml"] == "pass"
    assert verdicts["mailchimp--2023-01-17-schreibsuchti.u1.eml"] == "warn"
    assert verdicts["optimizely--2023-01-04-wwf.u1.eml"] == "fail"
    assert sum(v == "fail" for v in verdicts.values()) == 14
