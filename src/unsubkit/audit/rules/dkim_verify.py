"""Each DKIM signature verifies with its published (or given) key."""

from __future__ import annotations

from collections.abc import Iterator

from ..context import CheckContext
from ..dkimsig import VerifyStatus
from ..model import Finding, RuleInfo, Severity
from .base import Rule

__all__ = ["RULE"]

FAILS = RuleInfo(
    "LU103", Severity.ERROR, "DKIM signature does not verify",
    "Sign last, after every change to the message, with the key published for the selector.",
)
NOT_CHECKED = RuleInfo(
    "LU104", Severity.INFO, "DKIM signatures not verified: no key source",
    "Run with --dns to fetch keys, or give them with --dkim-key SELECTOR._domainkey.DOMAIN=FILE.",
)
NO_KEY = RuleInfo(
    "LU105", Severity.WARNING, "DKIM key not available",
    "Publish the key as a TXT record at SELECTOR._domainkey.DOMAIN (or check the selector).",
)


def check(ctx: CheckContext) -> Iterator[Finding]:
    sigs = ctx.usable_signatures
    if not sigs:
        return
    if ctx.options.keys is None:
        yield NOT_CHECKED.finding(f"{len(sigs)} signature(s) inspected, none verified")
        return
    for sig in sigs:
        result = ctx.verifications.get(sig.index)
        if result is None or result.status is VerifyStatus.PASS:
            continue
        if result.status is VerifyStatus.FAIL:
            yield FAILS.finding(f"{sig.label}: {result.detail}", domain=sig.domain, selector=sig.selector)
        else:
            yield NO_KEY.finding(f"{sig.label}: {result.detail}", domain=sig.domain, selector=sig.selector)


RULE = Rule("dkim-verify", (FAILS, NOT_CHECKED, NO_KEY), check)
