"""Line lengths (RFC 5322 section 2.1.1): at most 998 octets, and 78 recommended.

A longer line gets broken by some relay on the way, which breaks the URI and the signature.
"""

from __future__ import annotations

from collections.abc import Iterator

from ...headers import LIST_UNSUBSCRIBE, LIST_UNSUBSCRIBE_POST
from ..context import CheckContext
from ..model import Finding, RuleInfo, Severity
from .base import Rule

__all__ = ["RULE"]

HARD = 998
SOFT = 78

FIELD_TOO_LONG = RuleInfo(
    "LU060", Severity.ERROR, "unsubscribe field line longer than 998 octets",
    "Fold after the comma between items (never inside <...>); shorten the URI if one item is too long.",
)
FIELD_LONG = RuleInfo(
    "LU061", Severity.INFO, "unsubscribe field line longer than 78 octets",
    "Optionally fold after the comma between items; a single long URI on its own line is fine.",
)
OTHER_TOO_LONG = RuleInfo(
    "LU062", Severity.ERROR, "message line longer than 998 octets",
    "Use quoted-printable or base64 for long body lines and fold long header fields.",
)


def check(ctx: CheckContext) -> Iterator[Finding]:
    unsub_lines: set[int] = set()
    for name in (LIST_UNSUBSCRIBE, LIST_UNSUBSCRIBE_POST):
        for f in ctx.msg.get_all(name):
            longest = max(len(line) for line in f.lines)
            unsub_lines.update(range(f.lineno, f.lineno + len(f.lines)))
            if longest > HARD:
                yield FIELD_TOO_LONG.finding(f"{name}: a line of {longest} octets", octets=longest)
            elif longest > SOFT:
                yield FIELD_LONG.finding(f"{name}: a line of {longest} octets", octets=longest)
    too_long = [
        (i + 1, len(line))
        for i, line in enumerate(ctx.msg.lines)
        if len(line) > HARD and (i + 1) not in unsub_lines
    ]
    if too_long:
        first, octets = too_long[0]
        where = "header" if first <= ctx.msg.header_line_count else "body"
        yield OTHER_TOO_LONG.finding(
            f"{len(too_long)} line(s) over {HARD} octets, first: line {first} ({where}, {octets} octets)",
            lines=len(too_long),
        )


RULE = Rule("line-length", (FIELD_TOO_LONG, FIELD_LONG, OTHER_TOO_LONG), check)
