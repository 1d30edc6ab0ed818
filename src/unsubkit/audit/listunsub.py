"""A lenient tokenizer for List-Unsubscribe values that reports every fault it works around (pure).

:func:`unsubkit.headers.parse_list_unsubscribe` is strict (it raises on the first problem),
which is right for our own headers. The checker reads other people's mail and must say what is
wrong *and* carry on, so here each deviation from RFC 2369 becomes a :class:`Fault` and the
best guess at the URIs is still returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from .message import decode_words

__all__ = ["Fault", "FaultKind", "ParsedField", "UriItem", "tokenize"]

ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_BARE = re.compile(r"[^,<>]*")


class FaultKind(StrEnum):
    UNBRACKETED = "unbracketed"  # URI not inside <...>
    SPACE_INSIDE = "space-inside"  # whitespace inside <...> on one line
    FOLD_INSIDE = "fold-inside"  # a line fold inside <...>
    NO_COMMA = "no-comma"  # two items not separated by a comma
    NESTED = "nested"  # '<' inside <...>
    UNBALANCED = "unbalanced"  # '>' without '<'
    UNTERMINATED = "unterminated"  # '<' or '(' never closed
    EMPTY_ITEM = "empty-item"  # '<>'
    EMPTY_FIELD = "empty-field"  # nothing at all


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    detail: str


@dataclass(frozen=True, slots=True)
class UriItem:
    #: The URI with any whitespace removed (our best guess at what was meant).
    uri: str
    bracketed: bool
    comment: str | None = None

    @property
    def scheme(self) -> str:
        scheme, colon, _ = self.uri.partition(":")
        return scheme.lower() if colon and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", scheme) else ""


@dataclass(frozen=True, slots=True)
class ParsedField:
    items: tuple[UriItem, ...]
    faults: tuple[Fault, ...]
    encoded_words: bool
    non_ascii: bool

    @property
    def uris(self) -> list[str]:
        return [i.uri for i in self.items]

    def of_scheme(self, *schemes: str) -> list[UriItem]:
        return [i for i in self.items if i.scheme in schemes]


def _short(text: str, n: int = 60) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= n else text[: n - 1] + "…"


def _read_comment(text: str, pos: int) -> tuple[str | None, int]:
    """``text[pos] == '('``: return the comment and the index after it (None if unterminated)."""
    depth = 0
    i = pos
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return text[pos + 1 : i], i + 1
        i += 1
    return None, len(text)


def tokenize(raw_value: bytes) -> ParsedField:
    """Split a raw (possibly folded) List-Unsubscribe value into URIs and faults. Never raises."""
    non_ascii = any(b > 0x7F for b in raw_value)
    text = raw_value.decode("utf-8", errors="replace")
    encoded = bool(ENCODED_WORD.search(text))
    if encoded:
        # Decode to see what the sender meant; the encoding itself is reported separately.
        text = decode_words(re.sub(r"\r?\n(?=[ \t])", "", text))
    # A newline marks a fold: whitespace, but one that tells us where the line was broken.
    text = re.sub(r"\r?\n", "\n", text)

    items: list[UriItem] = []
    faults: list[Fault] = []
    expecting = True  # at the start or right after a comma
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\n\r":
            i += 1
        elif ch == ",":
            expecting = True
            i += 1
        elif ch == "(":
            comment, i = _read_comment(text, i)
            if comment is None:
                faults.append(Fault(FaultKind.UNTERMINATED, "a '(' comment is never closed"))
            elif items and items[-1].comment is None:
                items[-1] = UriItem(items[-1].uri, items[-1].bracketed, comment.strip())
        elif ch == ">":
            faults.append(Fault(FaultKind.UNBALANCED, f"'>' without '<' at column {i + 1}"))
            i += 1
        elif ch == "<":
            if not expecting:
                faults.append(Fault(FaultKind.NO_COMMA, "two items are not separated by a comma"))
            close = text.find(">", i + 1)
            nested = text.find("<", i + 1)
            if close == -1:
                inner = text[i + 1 :]
                faults.append(Fault(FaultKind.UNTERMINATED, f"'<' never closed: {_short(inner)!r}"))
                i = n
            else:
                if nested != -1 and nested < close:
                    faults.append(Fault(FaultKind.NESTED, f"'<' inside <...>: {_short(text[i:close + 1])!r}"))
                inner = text[i + 1 : close]
                i = close + 1
            uri = re.sub(r"\s+", "", inner).replace("<", "")
            if "\n" in inner.strip():
                faults.append(Fault(FaultKind.FOLD_INSIDE, f"line folded inside <...>: {_short(inner)!r}"))
            elif re.search(r"\s", inner):
                faults.append(Fault(FaultKind.SPACE_INSIDE, f"whitespace inside <...>: {_short(inner)!r}"))
            if uri:
                items.append(UriItem(uri, bracketed=close != -1))
            else:
                faults.append(Fault(FaultKind.EMPTY_ITEM, "an empty <> item"))
            expecting = False
        else:
            # Bare text: read up to the next comma or bracket as one (unbracketed) URI.
            m = _BARE.match(text, i)
            end = m.end() if m else n
            bare = text[i:end].strip()
            i = max(end, i + 1)
            if not expecting:
                faults.append(Fault(FaultKind.NO_COMMA, "two items are not separated by a comma"))
            faults.append(Fault(FaultKind.UNBRACKETED, f"not in angle brackets: {_short(bare)!r}"))
            if re.search(r"\s", bare):
                kind = FaultKind.FOLD_INSIDE if "\n" in bare else FaultKind.SPACE_INSIDE
                faults.append(Fault(kind, f"whitespace inside a URI: {_short(bare)!r}"))
            uri = re.sub(r"\s+", "", bare)
            if uri:
                items.append(UriItem(uri, bracketed=False))
            expecting = False
    if not items and not any(f.kind is FaultKind.EMPTY_ITEM for f in faults):
        faults.append(Fault(FaultKind.EMPTY_FIELD, "the field holds no URI"))
    return ParsedField(tuple(items), tuple(faults), encoded, non_ascii)
