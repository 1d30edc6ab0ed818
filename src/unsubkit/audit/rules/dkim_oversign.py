"""Both unsubscribe fields are oversigned: named in h= once more than they occur.

Without that, anyone relaying the message can add a second List-Unsubscribe (pointing anywhere)
and the signature still verifies, since DKIM signs fields from the bottom up.
"""

from __future__ import annotations

from collections.abc import Iterator

from ...headers import LIST_UNSUBSCRIBE, LIST_UNSUBSCRIBE_POST
from ..context import CheckContext
from ..model import Finding, RuleInfo, Severity
from .base import Rule
from .dkim_coverage import covered_fields

__all__ = ["RULE"]

NOT_OVERSIGNED = RuleInfo(
    "LU102", Severity.WARNING, "unsubscribe fields are not oversigned",
    "Name List-Unsubscribe and List-Unsubscribe-Post in h= once more than they occur "
    "(e.g. `h=...:list-unsubscribe:list-unsubscribe:list-unsubscribe-post:list-unsubscribe-post`).",
)


def check(ctx: CheckContext) -> Iterator[Finding]:
    if not ctx.has_list_unsubscribe:
        return
    need = covered_fields(ctx)
    covering = [s for s in ctx.usable_signatures if all(s.signs(n) for n in need)]
    if not covering:
        return  # LU101 already says the fields are not signed at all
    present = {n: ctx.msg.count(n) for n in (LIST_UNSUBSCRIBE, LIST_UNSUBSCRIBE_POST)}
    for s in covering:
        if all(s.signs(n) > present[n] for n in present):
            return
    details = []
    for s in covering:
        short = [f"{n} signed {s.signs(n)}x, present {present[n]}x" for n in present if s.signs(n) <= present[n]]
        details.append(f"{s.label}: " + ", ".join(short))
    yield NOT_OVERSIGNED.finding("; ".join(details))


RULE = Rule("dkim-oversign", (NOT_OVERSIGNED,), check)
