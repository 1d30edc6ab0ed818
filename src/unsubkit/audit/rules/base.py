"""The shape of a rule: a name, the codes it may report, and a check over a context."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..context import CheckContext
from ..model import Finding, RuleInfo

__all__ = ["Rule"]


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    codes: tuple[RuleInfo, ...]
    check: Callable[[CheckContext], Iterable[Finding]]
