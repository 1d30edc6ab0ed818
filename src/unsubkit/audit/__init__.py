"""The compliance checker: a pipeline of small named rules over any raw message (pure).

    >>> report = check_message(raw_bytes, CheckOptions(keys=StaticKeys({...})))
    >>> report.verdict, [f.code for f in report.findings]

Each rule (one module in :mod:`unsubkit.audit.rules`) has stable codes ``LUnnn`` with a
severity and a one-sentence fix; ``docs/checker.md`` holds the table.
"""

from __future__ import annotations

from .context import CheckOptions, OwnTokens, TokenOpener
from .keys import KeyLookup, StaticKeys, dns_lookup, key_record_from_bytes
from .model import Finding, Report, RuleInfo, Severity, Verdict
from .pipeline import check_message, split_mbox
from .rules import RULES, all_codes

__all__ = [
    "RULES",
    "CheckOptions",
    "Finding",
    "KeyLookup",
    "OwnTokens",
    "Report",
    "RuleInfo",
    "Severity",
    "StaticKeys",
    "TokenOpener",
    "Verdict",
    "all_codes",
    "check_message",
    "dns_lookup",
    "key_record_from_bytes",
    "split_mbox",
]
