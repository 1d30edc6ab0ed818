"""mailto: URIs valid per RFC 6068: an addr-spec, only allowed characters, well-formed hfields."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import unquote

from ..context import CheckContext
from ..model import Finding, RuleInfo, Severity
from .base import Rule

__all__ = ["RULE", "mailto_faults"]

INVALID = RuleInfo(
    "LU030", Severity.ERROR, "mailto URI is not valid per RFC 6068",
    "Write `mailto:local@domain?subject=unsubscribe`, percent-encoding reserved characters.",
)

# RFC 6068: to = addr-spec *("," addr-spec) with unreserved / pct-encoded / some-delims
_TO_CHARS = re.compile(r"^[A-Za-z0-9\-._~!$'()*+,;:@%]*$")
# hfname / hfvalue = *qchar; qchar excludes '&', '=', '?', '/'
_Q_CHARS = re.compile(r"^[A-Za-z0-9\-._~!$'()*+,;:@%]*$")
_BAD_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^(?:{_LABEL}\.)+{_LABEL}$|^\[[^\[\]]+\]$")


def mailto_faults(uri: str) -> list[str]:
    """Every RFC 6068 problem of one ``mailto:`` URI (empty list: valid)."""
    faults: list[str] = []
    body = uri[len("mailto:") :] if uri.lower().startswith("mailto:") else uri
    to, _, query = body.partition("?")
    if _BAD_PCT.search(body):
        faults.append("a '%' is not followed by two hex digits")
    if not _TO_CHARS.match(to):
        bad = sorted({c for c in to if not _TO_CHARS.match(c)})
        faults.append(f"characters that must be percent-encoded in the address: {''.join(bad)!r}")
    addresses = [unquote(a) for a in to.split(",") if a] if to else []
    if not addresses:
        faults.append("no address after mailto:")
    for addr in addresses:
        local, at, domain = addr.rpartition("@")
        if not at or not local or not _DOMAIN.match(domain):
            faults.append(f"{addr!r} is not local@domain")
    if query:
        for pair in query.split("&"):
            name, eq, value = pair.partition("=")
            if not eq or not name:
                faults.append(f"header field {pair!r} is not name=value")
            elif not _Q_CHARS.match(name) or not _Q_CHARS.match(value):
                faults.append(f"header field {name!r} has characters that must be percent-encoded")
    return faults


def check(ctx: CheckContext) -> Iterator[Finding]:
    for uri in ctx.mailto_uris:
        faults = mailto_faults(uri)
        if faults:
            shown = uri if len(uri) <= 80 else uri[:79] + "…"
            yield INVALID.finding(f"{shown}: " + "; ".join(faults))


RULE = Rule("mailto", (INVALID,), check)
