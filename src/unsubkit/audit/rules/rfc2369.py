"""RFC 2369 syntax of List-Unsubscribe: ``<URI>`` items, separated by commas, nothing inside
the brackets split by a fold or spaced out (a client would take the URI up to the space)."""

from __future__ import annotations

from collections.abc import Iterator

from ..context import CheckContext
from ..listunsub import FaultKind
from ..model import Finding, RuleInfo, Severity
from .base import Rule

__all__ = ["RULE"]

UNBRACKETED = RuleInfo(
    "LU010", Severity.ERROR, "URI not in angle brackets",
    "Write each URI as <URI>; RFC 2369 clients ignore bare URIs.",
)
SPACED = RuleInfo(
    "LU011", Severity.ERROR, "URI split by a fold or containing whitespace",
    "Never fold or put spaces inside <...>; fold only after the comma between two items.",
)
SEPARATION = RuleInfo(
    "LU012", Severity.ERROR, "items not separated properly",
    "Separate items with a comma and balance every '<' with a '>': `<https://...>, <mailto:...>`.",
)
EMPTY = RuleInfo(
    "LU013", Severity.ERROR, "List-Unsubscribe holds no URI",
    "Put at least one HTTPS URI in angle brackets into the field.",
)

_CODE = {
    FaultKind.UNBRACKETED: UNBRACKETED,
    FaultKind.SPACE_INSIDE: SPACED,
    FaultKind.FOLD_INSIDE: SPACED,
    FaultKind.NO_COMMA: SEPARATION,
    FaultKind.NESTED: SEPARATION,
    FaultKind.UNBALANCED: SEPARATION,
    FaultKind.UNTERMINATED: SEPARATION,
    FaultKind.EMPTY_ITEM: EMPTY,
    FaultKind.EMPTY_FIELD: EMPTY,
}


def check(ctx: CheckContext) -> Iterator[Finding]:
    parsed = ctx.list_unsubscribe
    if parsed is None:
        return
    seen: set[tuple[str, str]] = set()
    for fault in parsed.faults:
        info = _CODE[fault.kind]
        if (info.code, fault.detail) in seen:
            continue
        seen.add((info.code, fault.detail))
        yield info.finding(fault.detail)


RULE = Rule("rfc2369", (UNBRACKETED, SPACED, SEPARATION, EMPTY), check)
