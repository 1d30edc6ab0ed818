"""A hint: transactional-looking mail with unsubscribe headers, marketing-looking mail without."""

from __future__ import annotations

from collections.abc import Iterator

from ..classify import Kind
from ..context import CheckContext
from ..model import Finding, RuleInfo, Severity
from .base import Rule

__all__ = ["RULE"]

TRANSACTIONAL_WITH = RuleInfo(
    "LU300", Severity.WARNING, "transactional-looking message carries unsubscribe headers",
    "Send receipts and password resets under a transactional purpose (no headers); a marketing "
    "opt-out must never stop them.",
)
TRANSACTIONAL_WITHOUT = RuleInfo(
    "LU301", Severity.INFO, "transactional-looking message without unsubscribe headers",
    "Nothing to do if it is transactional; if it is promotional, add the headers.",
)
MARKETING_WITHOUT = RuleInfo(
    "LU302", Severity.INFO, "marketing-looking message without unsubscribe headers",
    "Add List-Unsubscribe and List-Unsubscribe-Post (see LU001).",
)


def check(ctx: CheckContext) -> Iterator[Finding]:
    c = ctx.classification
    signals = ", ".join(c.signals[:5])
    if c.kind is Kind.TRANSACTIONAL:
        info = TRANSACTIONAL_WITH if ctx.has_list_unsubscribe else TRANSACTIONAL_WITHOUT
        yield info.finding(f"signals: {signals}", kind=c.kind.value)
    elif c.kind is Kind.MARKETING and not ctx.has_list_unsubscribe:
        yield MARKETING_WITHOUT.finding(f"signals: {signals}", kind=c.kind.value)


RULE = Rule("classification", (TRANSACTIONAL_WITH, TRANSACTIONAL_WITHOUT, MARKETING_WITHOUT), check)
