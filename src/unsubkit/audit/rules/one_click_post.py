"""List-Unsubscribe-Post holds exactly ``List-Unsubscribe=One-Click`` (RFC 8058 section 3.1)."""

from __future__ import annotations

from collections.abc import Iterator

from ...headers import LIST_UNSUBSCRIBE_POST, ONE_CLICK
from ..context import CheckContext
from ..message import decode_words
from ..model import Finding, RuleInfo, Severity
from .base import Rule

__all__ = ["RULE"]

WRONG_VALUE = RuleInfo(
    "LU040", Severity.ERROR, "List-Unsubscribe-Post value is not List-Unsubscribe=One-Click",
    "Set the field to exactly `List-Unsubscribe=One-Click`, nothing more.",
)


def check(ctx: CheckContext) -> Iterator[Finding]:
    for f in ctx.msg.get_all(LIST_UNSUBSCRIBE_POST):
        value = f.value
        if value == ONE_CLICK:
            continue
        if decode_words(value).strip() == ONE_CLICK:
            continue  # only encoded: reported by the encoding rule
        yield WRONG_VALUE.finding(f"found {value[:80]!r}")


RULE = Rule("one-click-post", (WRONG_VALUE,), check)
