"""The unsubscribe fields are present, and each appears once (RFC 2369, RFC 8058 section 3.1)."""

from __future__ import annotations

from collections.abc import Iterator

from ...headers import LIST_UNSUBSCRIBE, LIST_UNSUBSCRIBE_POST
from ..classify import Kind
from ..context import CheckContext
from ..model import Finding, RuleInfo, Severity
from .base import Rule

__all__ = ["RULE"]

MISSING = RuleInfo(
    "LU001", Severity.ERROR, "List-Unsubscribe is missing",
    "Add a List-Unsubscribe field with an HTTPS URI (and a mailto URI) to every bulk message.",
)
REPEATED = RuleInfo(
    "LU002", Severity.ERROR, "List-Unsubscribe appears more than once",
    "Keep exactly one List-Unsubscribe field; put every URI into it, separated by commas.",
)
POST_MISSING = RuleInfo(
    "LU003", Severity.ERROR, "List-Unsubscribe-Post is missing",
    "Add `List-Unsubscribe-Post: List-Unsubscribe=One-Click` so that providers offer one-click.",
)
POST_REPEATED = RuleInfo(
    "LU004", Severity.ERROR, "List-Unsubscribe-Post appears more than once",
    "Keep exactly one List-Unsubscribe-Post field.",
)
POST_ALONE = RuleInfo(
    "LU005", Severity.WARNING, "List-Unsubscribe-Post without List-Unsubscribe",
    "Add the List-Unsubscribe field with the HTTPS URI that the POST should go to.",
)


def check(ctx: CheckContext) -> Iterator[Finding]:
    n_lu = ctx.msg.count(LIST_UNSUBSCRIBE)
    n_post = ctx.msg.count(LIST_UNSUBSCRIBE_POST)
    if n_lu == 0:
        kind = ctx.classification.kind
        if kind is not Kind.TRANSACTIONAL:
            yield MISSING.finding("no List-Unsubscribe field in the header section")
        if n_post:
            yield POST_ALONE.finding("List-Unsubscribe-Post is present, List-Unsubscribe is not")
    else:
        if n_lu > 1:
            yield REPEATED.finding(f"List-Unsubscribe appears {n_lu} times")
        if n_post == 0:
            yield POST_MISSING.finding("no List-Unsubscribe-Post field: providers show no one-click button")
    if n_post > 1:
        yield POST_REPEATED.finding(f"List-Unsubscribe-Post appears {n_post} times")


RULE = Rule("presence", (MISSING, REPEATED, POST_MISSING, POST_REPEATED, POST_ALONE), check)
