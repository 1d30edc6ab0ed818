"""unsubkit's own tokens, when a local configuration is at hand: each one opens, is not
expired, and all tokens in the message name the same recipient and scope."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

from ...address import mask
from ...clock import to_datetime
from ...errors import TokenError
from ...tokens import CLOCK_SKEW, Claims
from ..context import CheckContext, OwnTokens
from ..links import html_links, text_links
from ..model import Finding, RuleInfo, Severity
from .base import Rule

__all__ = ["RULE", "find_tokens"]

OPENS = RuleInfo(
    "LU400", Severity.INFO, "unsubkit token opens",
    "Nothing to do; the brand, purpose and expiry are shown for review.",
)
BROKEN = RuleInfo(
    "LU401", Severity.ERROR, "unsubkit token does not open",
    "Build the headers with this installation's key ring (`unsubkit headers`/`prepare`); "
    "a token from another ring or an edited URL cannot be honoured.",
)
EXPIRED = RuleInfo(
    "LU402", Severity.ERROR, "unsubkit token has expired",
    "Build fresh headers for each send; raise the brand's token_lifetime_days if mail is kept long.",
)
DISAGREE = RuleInfo(
    "LU403", Severity.WARNING, "tokens in the message name different recipients or scopes",
    "Build the header and body links from the same call for the same recipient.",
)
NONE_FOUND = RuleInfo(
    "LU404", Severity.INFO, "no unsubkit token in the message",
    "Nothing to do unless the message should use this installation's URLs.",
)

_TOKEN = re.compile(r"[A-Za-z0-9_\-]+")


def _web_token(url: str, base: str) -> str | None:
    try:
        u, b = urlsplit(url), urlsplit(base)
    except ValueError:
        return None
    if (u.scheme.lower(), u.netloc.lower()) != (b.scheme.lower(), b.netloc.lower()):
        return None
    prefix = b.path.rstrip("/")
    for kind in ("/u/", "/p/"):
        if u.path.startswith(prefix + kind):
            m = _TOKEN.fullmatch(u.path[len(prefix + kind):].rstrip("/"))
            return m.group(0) if m else None
    return None


def _mailto_token(uri: str, address: str) -> str | None:
    to = unquote(uri[7:].partition("?")[0])
    local, _, domain = to.rpartition("@")
    base_local, _, base_domain = address.rpartition("@")
    if domain.lower() != base_domain.lower() or not local.lower().startswith(base_local.lower() + "+"):
        return None
    return local[len(base_local) + 1 :] or None


def find_tokens(ctx: CheckContext, own: OwnTokens) -> list[tuple[str, str]]:
    """``(where, token)`` pairs, in order, without repeats."""
    found: list[tuple[str, str]] = []
    candidates = [("List-Unsubscribe", uri) for uri in ctx.web_urls + ctx.mailto_uris]
    for part in ctx.msg.parts:
        links = html_links(part.text) if part.subtype == "html" else text_links(part.text)
        label = "HTML body" if part.subtype == "html" else "text body"
        candidates.extend((label, link.url) for link in links)
    for where, uri in candidates:
        token = None
        if uri.lower().startswith("mailto:"):
            for address in own.mailto_addresses:
                token = token or _mailto_token(uri, address)
        else:
            for base in own.base_urls:
                token = token or _web_token(uri, base)
        if token and (where, token) not in found:
            found.append((where, token))
    return found


def _scope(c: Claims) -> tuple[str, int, int | None, str]:
    return (c.address, c.purpose_id, c.topic_id, c.brand)


def check(ctx: CheckContext) -> Iterator[Finding]:
    own = ctx.options.tokens
    if own is None:
        return
    found = find_tokens(ctx, own)
    if not found:
        yield NONE_FOUND.finding("no URI points at " + ", ".join(own.base_urls or ("(no base URL)",)))
        return
    now = ctx.now
    opened: dict[tuple[str, int, int | None, str], tuple[Claims, list[str]]] = {}
    for where, token in found:
        try:
            claims = own.opener.open(token, check_expiry=False)
        except TokenError as exc:
            yield BROKEN.finding(f"{where}: {exc}")
            continue
        if claims.issued_at > now + CLOCK_SKEW:
            yield BROKEN.finding(f"{where}: token is issued in the future")
            continue
        expires = claims.issued_at + own.opener.lifetime_of(claims.brand)
        if now > expires:
            yield EXPIRED.finding(f"{where}: expired {to_datetime(expires).isoformat()}")
            continue
        entry = opened.setdefault(_scope(claims), (claims, []))
        entry[1].append(where)
    for claims, places in opened.values():
        purpose = (own.purpose_name(claims.purpose_id) if own.purpose_name else None) or f"#{claims.purpose_id}"
        topic = None
        if claims.topic_id is not None:
            topic = (own.topic_name(claims.topic_id) if own.topic_name else None) or f"#{claims.topic_id}"
        until = to_datetime(claims.issued_at + own.opener.lifetime_of(claims.brand)).isoformat()
        yield OPENS.finding(
            f"{', '.join(places)}: brand {claims.brand}, purpose {purpose}"
            + (f", topic {topic}" if topic else "")
            + f", for {mask(claims.address)}, expires {until}",
            brand=claims.brand, purpose=purpose, topic=topic, address=mask(claims.address),
            expires=until, found_in=", ".join(places),
        )
    if len(opened) > 1:
        yield DISAGREE.finding(f"{len(opened)} different recipient/scope combinations")


RULE = Rule("own-tokens", (OPENS, BROKEN, EXPIRED, DISAGREE, NONE_FOUND), check)
