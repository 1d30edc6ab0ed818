"""A DKIM signature's d= is aligned with the From domain (relaxed: same organizational domain).

Mailbox providers judge the sender by the From domain; a signature only by the ESP's own domain
does not vouch for it (DMARC, RFC 7489 section 3.1.1).
"""

from __future__ import annotations

from collections.abc import Iterator

from ..context import CheckContext
from ..dkimsig import VerifyStatus
from ..domains import aligned, org_domain
from ..model import Finding, RuleInfo, Severity
from .base import Rule

__all__ = ["RULE"]

NOT_ALIGNED = RuleInfo(
    "LU106", Severity.ERROR, "no DKIM signature aligned with the From domain",
    "Sign with d= set to the From domain or a parent of it (configure a custom DKIM domain at your ESP).",
)
NO_FROM = RuleInfo(
    "LU107", Severity.WARNING, "From has no single address with a domain",
    "Give the message exactly one From field with one address.",
)


def check(ctx: CheckContext) -> Iterator[Finding]:
    sigs = ctx.usable_signatures
    if not sigs:
        return
    domain = ctx.msg.from_domain
    if domain is None:
        yield NO_FROM.finding(f"From: {ctx.msg.from_value[:80]!r}" if ctx.msg.count("From") else "no From field")
        return
    good = [s for s in sigs if aligned(s.domain, domain)]
    if ctx.verifications:
        # With keys at hand, an aligned signature has to verify too (DMARC's "pass and aligned").
        good = [s for s in good if ctx.verifications.get(s.index) is None
                or ctx.verifications[s.index].status is not VerifyStatus.FAIL]
    if not good:
        yield NOT_ALIGNED.finding(
            f"From domain {domain} (organizational {org_domain(domain)}); "
            f"signed by {', '.join(sorted({s.domain for s in sigs}))}"
        )


RULE = Rule("dkim-alignment", (NOT_ALIGNED, NO_FROM), check)
