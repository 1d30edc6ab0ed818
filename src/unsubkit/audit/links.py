"""Find the visible unsubscribe links in text and HTML body parts (pure).

A link counts as an unsubscribe link when its URL, its anchor text (HTML) or the text around
it (plain text: the same line or the two before) says so in one of the common languages, or
when it is the header's own URL. In HTML it must be visible: some text or an image inside the
anchor, and no ``display:none``/``hidden`` on the anchor.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from html import unescape

__all__ = ["UNSUBSCRIBE_WORDS", "BodyLink", "html_links", "text_links", "unsubscribe_links"]

UNSUBSCRIBE_WORDS = re.compile(
    r"unsubscri|un-subscri|opt[\s_-]?out|abmeld|abzumeld|abbestell|abzubestell|austragen|"
    r"abonnement\s+k[üu]ndigen|"
    r"d[ée]sinscri|d[ée]sabonn|darse\s+de\s+baja|cancelar\s+(?:la\s+)?suscripci|"
    r"disiscriv|afmeld|uitschrijv|avregistr|avsluta|wypisz|"
    r"manage\s+(?:your\s+)?(?:subscription|preferences|email)|email\s+preferences|"
    r"preference\s+cent|einstellungen\s+verwalten|list[-_]unsubscribe",
    re.IGNORECASE,
)
_URL_IN_TEXT = re.compile(r"https?://[^\s<>\"'\])]+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class BodyLink:
    url: str
    text: str
    visible: bool
    #: Does the link itself (URL or its words) say "unsubscribe"?
    says_unsubscribe: bool


# A regex scan rather than html.parser: newsletters run to hundreds of kB of table markup, and
# only anchors and the words around them matter. Unclosed anchors end at the next "<a".
_DROP = re.compile(r"<!--.*?-->|<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_ANCHOR = re.compile(r"<a\b([^>]*)>(.*?)(?:</a\s*>|(?=<a\b)|\Z)", re.IGNORECASE | re.DOTALL)
_ATTR = re.compile(r"""([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*(?:=\s*("[^"]*"|'[^']*'|[^\s"'>]+))?""")
_IMG = re.compile(r"<img\b([^>]*)>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")


def _attrs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in _ATTR.findall(text):
        out.setdefault(name.lower(), unescape(value[1:-1] if value[:1] in "'\"" else value))
    return out


def _words(html: str) -> str:
    return " ".join(unescape(_TAG.sub(" ", html)).split())


def html_links(html: str) -> list[BodyLink]:
    doc = _DROP.sub(" ", html)
    links = []
    for m in _ANCHOR.finditer(doc):
        a = _attrs(m.group(1))
        url = a.get("href", "").strip()
        if not url.lower().startswith(("http:", "https:", "mailto:")):
            continue
        inner = m.group(2)
        alts = [_attrs(img.group(1)).get("alt", "") for img in _IMG.finditer(inner)]
        text = " ".join([_words(inner), *alts]).strip()
        style = a.get("style", "").replace(" ", "").lower()
        hidden = "display:none" in style or "visibility:hidden" in style or "hidden" in a
        visible = not hidden and (bool(text) or bool(alts) or "<img" in inner.lower())
        marks = " ".join((a.get("class", ""), a.get("id", ""), a.get("title", "")))
        # "Klicke <a>hier</a>, um dich abzumelden": the words around the anchor count too.
        before = _words(doc[max(0, m.start() - 600) : m.start()])[-80:]
        after = _words(doc[m.end() : m.end() + 300])[:40]
        says = bool(UNSUBSCRIBE_WORDS.search(f"{url} {marks} {before} {text} {after}"))
        links.append(BodyLink(url, text[:120], visible, says))
    return links


_FOOTNOTE = re.compile(r"^\s*\[(\d+)\]\s*$")


def text_links(text: str) -> list[BodyLink]:
    links: list[BodyLink] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        for m in _URL_IN_TEXT.finditer(line):
            url = m.group(0).rstrip(".,;:!?")
            context = " ".join(lines[max(0, i - 2) : i + 1])
            # Footnote style ("Unsubscribe [3]" ... "[3] https://..."): read the referring line.
            ref = _FOOTNOTE.match(line[: m.start()])
            start = i
            if ref is None and not line[: m.start()].strip() and i > 0:
                ref = _FOOTNOTE.match(lines[i - 1])  # "[3]" alone, the URL on the next line
                start = i - 1
            if ref:
                marker = f"[{ref.group(1)}]"
                for j in range(start - 1, max(-1, start - 40), -1):
                    if marker in lines[j] and not _FOOTNOTE.match(lines[j].split(marker)[0] + marker):
                        context += " " + lines[j]
            says = bool(UNSUBSCRIBE_WORDS.search(url) or UNSUBSCRIBE_WORDS.search(context))
            links.append(BodyLink(url, line.strip()[:120], True, says))
    return links


def unsubscribe_links(links: Iterable[BodyLink], header_urls: Iterable[str]) -> list[BodyLink]:
    """Visible links that say unsubscribe, or that are one of the header's URLs."""
    wanted = {u for u in header_urls}
    return [link for link in links if link.visible and (link.says_unsubscribe or link.url in wanted)]
