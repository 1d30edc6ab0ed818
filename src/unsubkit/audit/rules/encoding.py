"""No RFC 2047 encoded words and no raw 8-bit bytes in the unsubscribe fields.

Encoded words are only allowed in unstructured text; a client reading ``=?us-ascii?Q?<https...``
finds no URI. This is what Python's ``email.policy.default`` does to a long List-Unsubscribe.
"""

from __future__ import annotations

from collections.abc import Iterator

from ...headers import LIST_UNSUBSCRIBE, LIST_UNSUBSCRIBE_POST
from ..context import CheckContext
from ..listunsub import ENCODED_WORD
from ..model import Finding, RuleInfo, Severity
from .base import Rule

__all__ = ["RULE"]

ENCODED = RuleInfo(
    "LU050", Severity.ERROR, "RFC 2047 encoded words in an unsubscribe field",
    "Write the field as plain ASCII; serialize with a policy that does not refold it "
    "(e.g. `policy.SMTP.clone(refold_source='none')`) or use unsubkit's header helpers.",
)
EIGHT_BIT = RuleInfo(
    "LU051", Severity.ERROR, "non-ASCII bytes in an unsubscribe field",
    "Percent-encode every non-ASCII character in the URIs.",
)


def check(ctx: CheckContext) -> Iterator[Finding]:
    for name in (LIST_UNSUBSCRIBE, LIST_UNSUBSCRIBE_POST):
        for f in ctx.msg.get_all(name):
            raw = f.raw_value
            text = raw.decode("utf-8", errors="replace")
            m = ENCODED_WORD.search(text)
            if m:
                yield ENCODED.finding(f"{name}: {m.group(0)[:60]!r}")
            if any(b > 0x7F for b in raw):
                yield EIGHT_BIT.finding(f"{name} on line {f.lineno}")


RULE = Rule("encoding", (ENCODED, EIGHT_BIT), check)
