"""The URIs in List-Unsubscribe: exactly one HTTPS URI (RFC 8058 section 3.1), no plain http,
a mailto for clients that only send mail, and nothing personal readable in the URL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

from ..context import CheckContext
from ..model import Finding, RuleInfo, Severity
from .base import Rule

__all__ = ["RULE"]

NO_HTTPS = RuleInfo(
    "LU020", Severity.ERROR, "no HTTPS URI",
    "Add exactly one <https://...> URI that accepts the one-click POST.",
)
MANY_HTTPS = RuleInfo(
    "LU021", Severity.ERROR, "more than one HTTPS URI",
    "Keep exactly one HTTPS URI; providers do not know which one to POST to.",
)
PLAIN_HTTP = RuleInfo(
    "LU022", Severity.WARNING, "plain http: URI",
    "Use https:; one-click needs HTTPS and the token must not travel in clear text.",
)
NO_MAILTO = RuleInfo(
    "LU023", Severity.INFO, "no mailto URI",
    "Add a <mailto:...> URI for clients that unsubscribe by email (Apple Mail, older Outlook).",
)
ADDRESS_IN_URL = RuleInfo(
    "LU024", Severity.WARNING, "an email address is readable in the URL",
    "Use an opaque token instead of the address; URLs end up in proxy and scanner logs.",
)
BAD_URI = RuleInfo(
    "LU025", Severity.WARNING, "URI with an unknown scheme or invalid characters",
    "Use only https: and mailto: URIs, percent-encoding any character not allowed in a URI.",
)

_URI_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")
_ADDRESS = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")


def _short(uri: str) -> str:
    return uri if len(uri) <= 80 else uri[:79] + "…"


def _address_in(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    tail = unquote(parts.path + "?" + parts.query + "#" + parts.fragment)
    m = _ADDRESS.search(tail)
    return m.group(0) if m else None


def check(ctx: CheckContext) -> Iterator[Finding]:
    parsed = ctx.list_unsubscribe
    if parsed is None or not parsed.items:
        return
    https = ctx.https_urls
    if not https:
        yield NO_HTTPS.finding("List-Unsubscribe offers no https: URI, so one-click is impossible")
    elif len(https) > 1:
        yield MANY_HTTPS.finding(f"{len(https)} https: URIs: " + ", ".join(_short(u) for u in https))
    for item in parsed.items:
        if item.scheme == "http":
            yield PLAIN_HTTP.finding(_short(item.uri))
        if item.scheme not in ("https", "http", "mailto"):
            yield BAD_URI.finding(f"scheme {item.scheme or '(none)'!r}: {_short(item.uri)}")
        elif not _URI_CHARS.match(item.uri):
            yield BAD_URI.finding(f"characters not allowed in a URI: {_short(item.uri)}")
        if item.scheme in ("https", "http"):
            found = _address_in(item.uri)
            if found:
                yield ADDRESS_IN_URL.finding(f"{found!r} appears in {_short(item.uri)}")
    if not ctx.mailto_uris:
        yield NO_MAILTO.finding("only web URIs are offered")


RULE = Rule("uris", (NO_HTTPS, MANY_HTTPS, PLAIN_HTTP, NO_MAILTO, ADDRESS_IN_URL, BAD_URI), check)
