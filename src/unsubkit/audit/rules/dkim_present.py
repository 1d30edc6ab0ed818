"""A DKIM signature is present and readable (RFC 8058 section 4 requires one covering the fields)."""

from __future__ import annotations

from collections.abc import Iterator

from ..context import CheckContext
from ..model import Finding, RuleInfo, Severity
from .base import Rule

__all__ = ["RULE"]

UNSIGNED = RuleInfo(
    "LU100", Severity.ERROR, "no DKIM signature",
    "Sign the message with DKIM (e.g. `unsubkit prepare`), covering both unsubscribe fields.",
)
MALFORMED = RuleInfo(
    "LU109", Severity.WARNING, "DKIM-Signature field is malformed",
    "Have the signer emit every required tag (v, a, b, bh, d, h, s) exactly once.",
)


def check(ctx: CheckContext) -> Iterator[Finding]:
    if not ctx.signatures:
        yield UNSIGNED.finding("no DKIM-Signature field")
        return
    for sig in ctx.signatures:
        if sig.problem:
            yield MALFORMED.finding(f"signature #{sig.index + 1} ({sig.label}): {sig.problem}")


RULE = Rule("dkim-present", (UNSIGNED, MALFORMED), check)
