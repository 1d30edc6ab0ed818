"""A visible unsubscribe link in the body (Gmail's and Yahoo's bulk-sender rules ask for one
besides the header), in the text and the HTML part, that matches or complements the header."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from urllib.parse import unquote

from ..classify import Kind
from ..context import CheckContext
from ..domains import host_of, org_domain
from ..links import BodyLink, html_links, text_links, unsubscribe_links
from ..model import Finding, RuleInfo, Severity
from .base import Rule

__all__ = ["RULE"]

NO_LINK = RuleInfo(
    "LU200", Severity.ERROR, "no visible unsubscribe link in the body",
    "Add a visible link labelled 'Unsubscribe' to the landing page (e.g. unsubkit's body URL) in every part.",
)
PART_LACKS = RuleInfo(
    "LU201", Severity.WARNING, "a body part has no unsubscribe link",
    "Put the unsubscribe link into both the text and the HTML alternative.",
)
UNRELATED = RuleInfo(
    "LU202", Severity.INFO, "body link unrelated to the header URIs",
    "Point the body link at the same service as the header (same domain or same token), "
    "so that both unsubscribe the same scope.",
)

_TOKENISH = re.compile(r"[A-Za-z0-9_\-]{16,}")


def _domain_of(uri: str) -> str:
    if uri.lower().startswith("mailto:"):
        addr = unquote(uri[7:].partition("?")[0].split(",")[0])
        return addr.rpartition("@")[2].lower()
    return host_of(uri)


def _related(link: BodyLink, header_uris: Sequence[str]) -> bool:
    if link.url in header_uris:
        return True
    domain = _domain_of(link.url)
    tokens = set(_TOKENISH.findall(link.url))
    for uri in header_uris:
        other = _domain_of(uri)
        if domain and other and org_domain(domain) == org_domain(other):
            return True
        if tokens & set(_TOKENISH.findall(uri)):
            return True
    return False


def check(ctx: CheckContext) -> Iterator[Finding]:
    if not ctx.has_list_unsubscribe and ctx.classification.kind is Kind.TRANSACTIONAL:
        return
    header_uris = ctx.web_urls + ctx.mailto_uris
    per_part: list[tuple[str, list[BodyLink]]] = []
    for part in ctx.msg.parts_of("plain"):
        per_part.append(("text", unsubscribe_links(text_links(part.text), header_uris)))
    for part in ctx.msg.parts_of("html"):
        per_part.append(("HTML", unsubscribe_links(html_links(part.text), header_uris)))
    if not per_part:
        yield NO_LINK.finding("the message has no text or HTML body part")
        return
    found = [link for _, links in per_part for link in links]
    if not found:
        kinds = " and ".join(sorted({label for label, _ in per_part}))
        yield NO_LINK.finding(f"no visible unsubscribe link in the {kinds} part(s)")
        return
    lacking = sorted({label for label, links in per_part if not links})
    if lacking:
        yield PART_LACKS.finding(f"the {' and '.join(lacking)} part has no unsubscribe link")
    if header_uris and not any(_related(link, header_uris) for link in found):
        shown = found[0].url if len(found[0].url) <= 80 else found[0].url[:79] + "…"
        yield UNRELATED.finding(f"body link {shown} shares no domain or token with the header")


RULE = Rule("body-link", (NO_LINK, PART_LACKS, UNRELATED), check)
