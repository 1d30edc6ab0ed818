"""What the checker reports: severities, rule descriptions, findings and per-message reports.

All frozen dataclasses, so a report can be cached, compared in tests and serialized as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["Finding", "Report", "RuleInfo", "Severity", "Verdict", "verdict_of"]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 0, "warning": 1, "info": 2}[self.value]


class Verdict(StrEnum):
    """``pass``: nothing above info; ``warn``: warnings only; ``fail``: at least one error."""

    PASS = "pass"  # noqa: S105 - a verdict, not a password
    WARN = "warn"
    FAIL = "fail"

    @property
    def label(self) -> str:
        return {"pass": "compliant", "warn": "compliant, with warnings", "fail": "not compliant"}[
            self.value
        ]


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """One stable finding code: what it means and how to fix it (the docs table is built from these)."""

    code: str
    severity: Severity
    title: str
    fix: str

    def finding(self, detail: str = "", **data: object) -> Finding:
        return Finding(
            code=self.code,
            severity=self.severity,
            title=self.title,
            fix=self.fix,
            detail=detail,
            data=tuple((k, str(v)) for k, v in data.items() if v is not None),
        )


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Severity
    title: str
    fix: str
    #: What exactly was seen in this message (never key material).
    detail: str = ""
    #: Extra facts for machine readers (``--json``), e.g. the brand a token names.
    data: tuple[tuple[str, str], ...] = ()

    @property
    def data_dict(self) -> dict[str, str]:
        return dict(self.data)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "severity": self.severity.value,
            "title": self.title,
            "detail": self.detail,
            "fix": self.fix,
        }
        if self.data:
            out["data"] = self.data_dict
        return out


def verdict_of(findings: Iterable[Finding]) -> Verdict:
    severities = {f.severity for f in findings}
    if Severity.ERROR in severities:
        return Verdict.FAIL
    if Severity.WARNING in severities:
        return Verdict.WARN
    return Verdict.PASS


@dataclass(frozen=True, slots=True)
class Report:
    """Every finding for one message, most severe first, with a verdict."""

    findings: tuple[Finding, ...]
    subject: str = ""
    from_: str = ""
    message_id: str = ""
    #: Where the message came from (file name, ``mbox[3]``); set by the caller.
    source: str = ""

    @property
    def verdict(self) -> Verdict:
        return verdict_of(self.findings)

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity is severity)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "subject": self.subject,
            "from": self.from_,
            "message_id": self.message_id,
            "verdict": self.verdict.value,
            "counts": {s.value: self.count(s) for s in Severity},
            "findings": [f.to_dict() for f in self.findings],
        }
