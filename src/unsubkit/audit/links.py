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
from html.parser import HTMLParser

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


class _AnchorParser(HTMLParser):
    """Collects anchors with their text and the document text around them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stream: list[str] = []
        self.size = 0
        #: (href, text, visible, class/id words, stream offset at start, at end)
        self.anchors: list[tuple[str, str, bool, str, int, int]] = []
        self._href: str | None = None
        self._hidden = False
        self._attrs = ""
        self._text: list[str] = []
        self._has_img = False
        self._start = 0

    def _emit(self, data: str) -> None:
        self.stream.append(data)
        self.size += len(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "a":
            self._close()
            self._href = a.get("href", "").strip()
            style = a.get("style", "").replace(" ", "").lower()
            self._hidden = "display:none" in style or "hidden" in a or "visibility:hidden" in style
            self._attrs = " ".join((a.get("class", ""), a.get("id", ""), a.get("title", "")))
            self._text = []
            self._has_img = False
            self._start = self.size
        elif tag == "img" and self._href is not None:
            self._has_img = True
            self._text.append(a.get("alt", ""))
        elif tag in ("br", "p", "div", "td", "tr", "li"):
            self._emit(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._close()

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)
        self._emit(data)

    def _close(self) -> None:
        if self._href is None:
            return
        text = " ".join(" ".join(self._text).split())
        visible = not self._hidden and (bool(text) or self._has_img)
        self.anchors.append((unescape(self._href), text, visible, self._attrs, self._start, self.size))
        self._href = None

    def close(self) -> None:
        super().close()
        self._close()


def html_links(html: str) -> list[BodyLink]:
    parser = _AnchorParser()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001 - HTMLParser is lenient; keep whatever it found on odd input
        parser._close()
    doc = "".join(parser.stream)
    links = []
    for url, text, visible, attrs, start, end in parser.anchors:
        if not url.lower().startswith(("http:", "https:", "mailto:")):
            continue
        # "Klicke <a>hier</a>, um dich abzumelden": the words around the anchor count too.
        around = " ".join(doc[max(0, start - 80) : end + 40].split())
        says = any(UNSUBSCRIBE_WORDS.search(x) for x in (text, url, attrs, around))
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
