"""List-Unsubscribe (RFC 2369) and List-Unsubscribe-Post (RFC 8058) fields (pure).

Folding rules, because mail software gets them wrong: a field is folded only after a comma
between two ``<...>`` items, never inside brackets, no line exceeds 998 octets, and the value
is never turned into RFC 2047 encoded words. The stdlib's ``email.policy.default`` would do the
latter to a long URI; :func:`set_unsubscribe_headers` stores a pre-folded header object that the
stdlib generator emits verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.header import Header
from email.message import EmailMessage, Message
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from .errors import HeaderError

__all__ = [
    "LIST_UNSUBSCRIBE",
    "LIST_UNSUBSCRIBE_POST",
    "ONE_CLICK",
    "HeaderTemplate",
    "UnsubscribeHeaders",
    "body_url",
    "build_list_unsubscribe",
    "fold",
    "mailto_address",
    "mailto_uri",
    "one_click_url",
    "parse_list_unsubscribe",
    "remove_unsubscribe_headers",
    "set_unsubscribe_headers",
]

LIST_UNSUBSCRIBE = "List-Unsubscribe"
LIST_UNSUBSCRIBE_POST = "List-Unsubscribe-Post"
ONE_CLICK = "List-Unsubscribe=One-Click"
MAX_LINE = 998
SOFT_LINE = 78

# Characters allowed in a URI per RFC 3986 (unreserved, reserved, and '%').
# (Used with fullmatch: a "$" anchor would let a trailing newline through, i.e. header injection.)
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
# A mailto local part that RFC 6068 lets stand as it is (the common case: no quoting needed).
_MAILTO_LOCAL_PLAIN = re.compile(r"[A-Za-z0-9!$'()*+,;=\-._~]*")
# An RFC 2047 encoded word (``=?utf-8?q?...?=``); a bare "=?" may occur inside a URI's query.
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[BbQq]\?[^?\s]*\?=")


@dataclass(frozen=True, slots=True)
class UnsubscribeHeaders:
    """The unsubscribe fields for one recipient of one message."""

    url: str | None
    mailto: str | None
    one_click: bool = True
    #: The fields, when a :class:`HeaderTemplate` already built (and validated) them.
    _fields: dict[str, str] | None = field(default=None, compare=False, repr=False, kw_only=True)

    @property
    def uris(self) -> list[str]:
        return [u for u in (self.url, self.mailto) if u]

    @property
    def list_unsubscribe(self) -> str:
        return build_list_unsubscribe(self.uris)

    @property
    def list_unsubscribe_post(self) -> str | None:
        # RFC 8058 section 3.1: the Post field only makes sense beside an HTTPS URI.
        return ONE_CLICK if self.one_click and self.url else None

    def as_dict(self) -> dict[str, str]:
        if self._fields is not None:
            return dict(self._fields)  # a copy: callers may change theirs
        out = {LIST_UNSUBSCRIBE: self.list_unsubscribe}
        post = self.list_unsubscribe_post
        if post:
            out[LIST_UNSUBSCRIBE_POST] = post
        return out

    def lines(self, linesep: str = "\r\n") -> str:
        """The fields as they go on the wire, each folded and terminated by ``linesep``."""
        return "".join(
            f"{name}: {fold(name, value, linesep=linesep)}{linesep}"
            for name, value in self.as_dict().items()
        )


#: RFC 3986 "unreserved" characters: what a token may contain for :class:`HeaderTemplate`. They
#: need no escaping in a URL path or a mailto local part and contain neither "=" nor "?", so no
#: encoded word can form across a token (see ``HeaderTemplate.__init__``).
_TOKEN_SAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


class HeaderTemplate:
    """The unsubscribe fields of one brand, validated once; per token only concatenation.

    Gives the same values as :func:`one_click_url`, :func:`mailto_address`, :func:`mailto_uri`,
    :func:`body_url` and :class:`UnsubscribeHeaders` (tests hold it to that) for tokens made of
    unreserved characters (base64url tokens always are). Building headers runs once per
    recipient of every message, so the per-brand work (validation, quoting) is done here once.
    """

    __slots__ = ("_body", "_mailto", "_one_click", "_url", "base_url", "mailto_address")

    def __init__(self, base_url: str | None, mailto: str | None, *, one_click: bool = True,
                 subject: str = "unsubscribe") -> None:
        self.base_url = base_url
        self.mailto_address = mailto
        base = None if base_url is None else base_url.rstrip("/")
        self._one_click = one_click
        self._url = f"{base}/u/" if base is not None and one_click else None
        self._body = None if base is None else f"{base}/p/"
        self._mailto: tuple[str, str] | None = None
        if mailto:
            # Split a real result at a marker token: exactly what the slow path quotes.
            marker = "T0KEN"
            uri = mailto_uri(mailto_address(mailto, marker), subject)
            head, _, tail = uri.rpartition(f"+{marker}@")
            self._mailto = (f"{head}+", f"@{tail}")
        # Validate once with a sample token: a token of unreserved characters cannot change the
        # verdict (no "=" or "?" in it, and nothing after the token in a URL contains a "?").
        sample = "A"
        if self._url or self._mailto:
            build_list_unsubscribe(u for u in (self.url(sample), self.mailto(sample)) if u)

    @staticmethod
    def _check(token: str) -> None:
        try:
            bad = not token or token.encode("ascii").translate(None, _TOKEN_SAFE)
        except UnicodeEncodeError:
            bad = True
        if bad:
            raise HeaderError("a token must be made of unreserved URI characters")

    def url(self, token: str) -> str | None:
        return None if self._url is None else self._url + token

    def mailto(self, token: str) -> str | None:
        return None if self._mailto is None else f"{self._mailto[0]}{token}{self._mailto[1]}"

    def body_url(self, token: str) -> str | None:
        return None if self._body is None else self._body + token

    def headers(self, token: str) -> UnsubscribeHeaders | None:
        """The fields for ``token``, or ``None`` when the brand has neither URL nor mailto."""
        self._check(token)
        url = None if self._url is None else self._url + token
        m = self._mailto
        mailto = None if m is None else f"{m[0]}{token}{m[1]}"
        if url is None:
            if mailto is None:
                return None
            fields = {LIST_UNSUBSCRIBE: f"<{mailto}>"}
        else:
            fields = {LIST_UNSUBSCRIBE: f"<{url}>" if mailto is None else f"<{url}>, <{mailto}>",
                      LIST_UNSUBSCRIBE_POST: ONE_CLICK}
        # Filled through the slot descriptors: the frozen dataclass's ``__init__`` costs twice that.
        h = _new(UnsubscribeHeaders)
        _set_url(h, url)
        _set_mailto(h, mailto)
        _set_one_click(h, self._one_click)
        _set_fields(h, fields)
        return h



def _slot_setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    """The ``__set__`` of a slot: fills a fresh (frozen) instance without ``object.__setattr__``."""
    setter: Callable[[Any, Any], None] = vars(cls)[name].__set__
    return setter


_new = object.__new__
_set_url = _slot_setter(UnsubscribeHeaders, "url")
_set_mailto = _slot_setter(UnsubscribeHeaders, "mailto")
_set_one_click = _slot_setter(UnsubscribeHeaders, "one_click")
_set_fields = _slot_setter(UnsubscribeHeaders, "_fields")


def one_click_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/u/{token}"


def body_url(base_url: str, token: str) -> str:
    """The visible link for the message body: the landing/preference page for the same token."""
    return f"{base_url.rstrip('/')}/p/{token}"


def mailto_address(address: str, token: str) -> str:
    """``unsubscribe@example.com`` + token -> ``unsubscribe+TOKEN@example.com``."""
    local, sep, domain = address.rpartition("@")
    if not sep or not local or not domain:
        raise HeaderError("mailto address must look like local@domain")
    return f"{local}+{token}@{domain}"


def mailto_uri(address: str, subject: str = "unsubscribe") -> str:
    """A ``mailto:`` URI per RFC 6068 (hfields percent-encoded)."""
    local, sep, domain = address.rpartition("@")
    if not sep:
        raise HeaderError("mailto address must look like local@domain")
    # RFC 6068 section 2: '%' and characters outside "some-delims" are percent-encoded.
    enc_local = local if _MAILTO_LOCAL_PLAIN.fullmatch(local) else quote(local, safe="!$'()*+,;=-._~")
    return f"mailto:{enc_local}@{domain}?subject={_quote_subject(subject)}"


@lru_cache(maxsize=64)
def _quote_subject(subject: str) -> str:
    # Nearly always the same few subjects; quoting is the costly part of building a mailto URI.
    return quote(subject, safe="")


def _check_uri(uri: str) -> None:
    if not _URI_CHARS.fullmatch(uri):
        raise HeaderError(f"not a URI that can stand in angle brackets: {uri[:60]!r}")
    if "=?" in uri and _ENCODED_WORD.search(uri):
        raise HeaderError("a URI that reads as an RFC 2047 encoded word is ambiguous in List-Unsubscribe")


def build_list_unsubscribe(uris: Iterable[str]) -> str:
    items = list(uris)
    if not items:
        raise HeaderError("List-Unsubscribe needs at least one URI")
    for uri in items:
        _check_uri(uri)
    return ", ".join(f"<{u}>" for u in items)


def fold(name: str, value: str, *, linesep: str = "\r\n", limit: int = SOFT_LINE) -> str:
    """Fold ``value`` (of field ``name``) after commas only; return it without the field name.

    The whole field stays on one line when it fits in ``limit``; otherwise each ``<...>`` item
    after the first starts a continuation line. A single item that cannot fit in 998 octets is
    an error, since it cannot be folded without breaking it.
    """
    items = _split_items(value)
    first_prefix = len(name) + 2
    if first_prefix + len(value) <= limit:
        return value
    lines: list[str] = []
    for i, item in enumerate(items):
        text = item + ("," if i < len(items) - 1 else "")
        prefix = first_prefix if i == 0 else 1
        if prefix + len(text) > MAX_LINE:
            raise HeaderError(f"{name} item is longer than {MAX_LINE} octets and cannot be folded")
        lines.append(text)
    return (linesep + " ").join(lines)


def _split_items(value: str) -> list[str]:
    """Split at commas outside angle brackets; keep brackets; strip surrounding space."""
    items: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(value):
        if ch == "<":
            if depth:
                raise HeaderError("nested '<' in List-Unsubscribe")
            depth = 1
        elif ch == ">":
            if not depth:
                raise HeaderError("unbalanced '>' in List-Unsubscribe")
            depth = 0
        elif ch == "," and not depth:
            items.append(value[start:i].strip())
            start = i + 1
    if depth:
        raise HeaderError("unterminated '<' in List-Unsubscribe")
    items.append(value[start:].strip())
    return [it for it in items if it]


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n[ \t]+", " ", value).strip()


def parse_list_unsubscribe(value: str) -> list[str]:
    """Parse a (possibly folded) List-Unsubscribe value into its URIs, in order.

    Strict: every item must be ``<URI>`` (RFC 2369 comments in parentheses after an item are
    tolerated and dropped); whitespace inside brackets is an error, since a client cannot use it.
    """
    if _ENCODED_WORD.search(value):
        raise HeaderError("List-Unsubscribe contains RFC 2047 encoded words")
    uris: list[str] = []
    for item in _split_items(_unfold(value)):
        item = re.sub(r"\s*\([^()]*\)\s*$", "", item)
        if not (item.startswith("<") and item.endswith(">")):
            raise HeaderError(f"List-Unsubscribe item is not in angle brackets: {item[:60]!r}")
        uri = item[1:-1]
        if re.search(r"\s", uri):
            raise HeaderError("whitespace inside <...> in List-Unsubscribe")
        _check_uri(uri)
        uris.append(uri)
    if not uris:
        raise HeaderError("List-Unsubscribe is empty")
    return uris


def split_uris(uris: Sequence[str]) -> tuple[str | None, str | None]:
    """The first HTTPS-or-HTTP URI and the first mailto URI of a parsed field."""
    url = next((u for u in uris if u.lower().startswith(("https:", "http:"))), None)
    mailto = next((u for u in uris if u.lower().startswith("mailto:")), None)
    return url, mailto


class _PreFolded(str):
    """A header value the stdlib generator emits exactly as folded by :func:`fold`.

    ``email.policy.EmailPolicy`` calls ``value.fold(policy=...)`` for stored header objects (any
    value with a ``name`` attribute) instead of refolding, which is what keeps encoded words out.
    """

    name: str

    def __new__(cls, name: str, value: str) -> _PreFolded:
        obj = super().__new__(cls, value)
        obj.name = name
        return obj

    def fold(self, *, policy: Any) -> str:
        linesep = getattr(policy, "linesep", "\n")
        return f"{self.name}: {fold(self.name, str(self), linesep=linesep)}{linesep}"

    # email.message and copy.deepcopy rebuild str subclasses through __reduce__.
    def __reduce__(self) -> tuple[Any, ...]:
        return (_PreFolded, (self.name, str(self)))

    @property
    def defects(self) -> tuple[()]:
        return ()


class _LegacyPreFolded(Header):
    """The same for ``compat32`` messages, whose generator calls ``Header.encode`` for non-str
    values. A plain string would be refolded by ``Header``: at 78 columns it breaks right after
    ``List-Unsubscribe:`` (before the first ``<``) or at a ``,``/``;`` inside a long URI."""

    def __init__(self, name: str, value: str) -> None:
        super().__init__(value, header_name=name)
        self.name = name
        self._value = value

    def encode(self, splitchars: str = ";, \t", maxlinelen: int | None = None, linesep: str = "\n") -> str:
        return fold(self.name, self._value, linesep=linesep)

    def fold(self, *, policy: Any) -> str:
        # Reached when a compat32 message is written with an EmailPolicy (``as_bytes(policy=SMTP)``).
        linesep = getattr(policy, "linesep", "\n")
        return f"{self.name}: {fold(self.name, self._value, linesep=linesep)}{linesep}"

    def __str__(self) -> str:
        return self._value


def remove_unsubscribe_headers(msg: Message) -> None:
    del msg[LIST_UNSUBSCRIBE]
    del msg[LIST_UNSUBSCRIBE_POST]


def set_unsubscribe_headers(msg: EmailMessage | Message, headers: UnsubscribeHeaders | Mapping[str, str]) -> None:
    """Replace any List-Unsubscribe fields of ``msg`` with ``headers``, safely folded.

    Works for messages using an ``EmailPolicy`` (``EmailMessage``, ``policy.default/SMTP``).
    For legacy ``compat32`` messages the value is stored as an :class:`email.header.Header`
    whose ``encode`` returns the same folding (``str()`` of it gives the value).
    """
    fields = headers.as_dict() if isinstance(headers, UnsubscribeHeaders) else dict(headers)
    for name, value in fields.items():
        # Validate all first (the message stays as it was on error): a value we cannot fold, or
        # one that would start a new header line (CR/LF from a caller's mapping), must not reach
        # the wire.
        if "\r" in value or "\n" in value or "\x00" in value:
            raise HeaderError(f"{name} value contains a line break")
        fold(name, value)
    remove_unsubscribe_headers(msg)
    legacy = not hasattr(msg.policy, "header_factory")
    for name, value in fields.items():
        msg[name] = _LegacyPreFolded(name, value) if legacy else _PreFolded(name, value)  # type: ignore[assignment]
