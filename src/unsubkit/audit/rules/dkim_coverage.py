"""A DKIM signature's h= covers List-Unsubscribe and List-Unsubscribe-Post (RFC 8058 section 4).

dkimpy's default h= leaves List-Unsubscribe-Post out, and then no provider shows one-click.
"""

from __future__ import annotations

from collections.abc import Iterator

from ...headers import LIST_UNSUBSCRIBE, LIST_UNSUBSCRIBE_POST
from ..context import CheckContext
from ..domains import aligned
from ..model import Finding, RuleInfo, Severity
from .base import Rule

__all__ = ["RULE", "covered_fields"]

NOT_COVERED = RuleInfo(
    "LU101", Severity.ERROR, "DKIM signature does not cover the unsubscribe fields",
    "List List-Unsubscribe and List-Unsubscribe-Post in h= of the signature (dkimpy's default omits the latter).",
)
ONLY_THIRD_PARTY = RuleInfo(
    "LU108", Severity.WARNING, "unsubscribe fields covered only by a signature not aligned with From",
    "Also cover both fields in the signature whose d= is the From domain.",
)


def covered_fields(ctx: CheckContext) -> list[str]:
    """The unsubscribe field names a signature must cover in this message."""
    names = [LIST_UNSUBSCRIBE]
    if ctx.has_post:
        names.append(LIST_UNSUBSCRIBE_POST)
    return names


def check(ctx: CheckContext) -> Iterator[Finding]:
    sigs = ctx.usable_signatures
    if not sigs or not ctx.has_list_unsubscribe:
        return
    need = covered_fields(ctx)
    covering = [s for s in sigs if all(s.signs(n) for n in need)]
    if not covering:
        parts = []
        for s in sigs:
            missing = [n for n in need if not s.signs(n)]
            parts.append(f"{s.label} lacks {', '.join(missing)}")
        yield NOT_COVERED.finding("; ".join(parts))
        return
    from_domain = ctx.msg.from_domain
    if from_domain is None:
        return
    aligned_sigs = [s for s in sigs if aligned(s.domain, from_domain)]
    if aligned_sigs and not any(s in covering for s in aligned_sigs):
        yield ONLY_THIRD_PARTY.finding(
            f"covered by {', '.join(s.label for s in covering)}; "
            f"not by the aligned {', '.join(s.label for s in aligned_sigs)}"
        )


RULE = Rule("dkim-coverage", (NOT_COVERED, ONLY_THIRD_PARTY), check)
