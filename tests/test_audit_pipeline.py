"""Pipeline plumbing: mbox splitting, a failing rule isolated, reports as data."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _audit_support import fixture
from unsubkit.audit import check_message, split_mbox
from unsubkit.audit import pipeline as pipeline_mod
from unsubkit.audit.rules import Rule


def test_split_mbox_unquotes_from_lines() -> None:
    one = fixture("compliant.eml")
    two = b"From: a@example.com\r\nSubject: x\r\n\r\nhello\r\n>From the start\r\n>>From deeper\r\n"
    mbox = b"From sender@example.com Thu Jan  1 00:00:00 2026\r\n" + one + b"\r\n" + \
           b"From sender@example.com Thu Jan  1 00:00:01 2026\r\n" + two + b"\r\n"
    parts = list(split_mbox(mbox))
    assert len(parts) == 2
    assert parts[0] == one
    assert parts[1].endswith(b"From the start\r\n>From deeper\r\n")


def test_split_mbox_of_a_plain_message_is_that_message() -> None:
    assert list(split_mbox(fixture("compliant.eml"))) == [fixture("compliant.eml")]


def test_a_failing_rule_does_not_hide_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(ctx: object) -> Iterator[object]:
        raise RuntimeError("kaputt")
        yield

    rules = (Rule("boom", (), boom), *pipeline_mod.RULES)  # type: ignore[arg-type]
    monkeypatch.setattr(pipeline_mod, "RULES", rules)
    report = check_message(fixture("missing-post.eml"))
    assert "LU999" in report.codes and "LU003" in report.codes
    assert "kaputt" in next(f.detail for f in report.findings if f.code == "LU999")


def test_report_metadata() -> None:
    report = check_message(fixture("compliant.eml"), source="x.eml")
    assert report.subject == "Spring newsletter: three new recipes"
    assert report.from_ == "Example News <news@example.com>"
    assert report.message_id == "<spring-2026.1@example.com>"
    assert report.to_dict()["source"] == "x.eml"
