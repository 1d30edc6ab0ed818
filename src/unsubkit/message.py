"""Preparing a message for sending (pure): unsubscribe fields, a visible link, DKIM last.

:func:`prepare_message` takes one recipient's :class:`~unsubkit.headers.UnsubscribeHeaders`
(tokens are per recipient, so a prepared message is too) and returns wire bytes (CRLF):

1. existing ``List-Unsubscribe``/``List-Unsubscribe-Post`` fields are replaced, never
   duplicated; the new ones are folded only after commas and never turned into RFC 2047
   encoded words;
2. every body ``text/plain`` and ``text/html`` part (not attachments, not forwarded messages)
   gets a visible link: a ``{{unsubscribe_url}}`` placeholder is replaced where present, else
   the brand's footer is added (HTML-escaped, before ``</body>``); each part keeps its charset
   and transfer encoding, re-encoded properly (quoted-printable and base64 included);
3. a missing ``Date``/``Message-ID`` is added (``h=`` oversigns them, so an MTA adding one
   after signing would break the signature); ``Bcc`` is removed;
4. earlier ``DKIM-Signature`` fields are removed and the new signatures are made last, over
   the final bytes.

Transactional mail (``headers=None``) gets no fields and no footer, and is still signed. The
stdlib parser/generator is used with ``refold_source="none"``, so header fields of the input
come out byte for byte as they went in (the default policy would refold long ones into
encoded words).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.policy
import html
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.utils import format_datetime, getaddresses
from functools import lru_cache

from .dkim import DKIMSigner, sign_message
from .errors import MessageError
from .headers import UnsubscribeHeaders, set_unsubscribe_headers
from .settings import Brand

__all__ = [
    "PLACEHOLDER",
    "POLICY",
    "Footer",
    "add_body_links",
    "parse_message",
    "prepare_message",
    "recipients",
    "serialize",
]

#: Parse and generate with this policy: CRLF, 8-bit bodies kept, source headers not refolded.
POLICY = email.policy.SMTP.clone(refold_source="none")
#: Placeholder for the body link in templates (spaces inside the braces are tolerated).
PLACEHOLDER = "{{unsubscribe_url}}"
_PLACEHOLDER = re.compile(r"\{\{\s*unsubscribe_url\s*\}\}")
# HTML editors percent-encode braces inside href attributes.
_PLACEHOLDER_PCT = re.compile(r"%7B%7B(?:\s|%20)*unsubscribe_url(?:\s|%20)*%7D%7D", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_HTML_END = re.compile(r"</html\s*>", re.IGNORECASE)
_MAX_LINE = 998


@dataclass(frozen=True, slots=True)
class Footer:
    """What to add when a part has no placeholder; ``{unsubscribe_url}`` marks the URL."""

    text: str = Brand.model_fields["footer_text"].default
    html: str = Brand.model_fields["footer_html"].default

    @classmethod
    def from_brand(cls, brand: Brand) -> Footer:
        return cls(text=brand.footer_text, html=brand.footer_html)


# -- parsing and generating ----------------------------------------------------------------


def parse_message(message: EmailMessage | Message | bytes) -> EmailMessage:
    """A private, mutable copy of ``message`` (bytes or a stdlib message object)."""
    if isinstance(message, Message):
        message = serialize(message)
    if not isinstance(message, bytes | bytearray):
        raise MessageError("a message must be bytes or an email.message.Message")
    if not message.strip():
        raise MessageError("the message is empty")
    msg = email.message_from_bytes(bytes(message), _class=EmailMessage, policy=POLICY)
    if not msg.keys():
        raise MessageError("the message has no header fields")
    return msg


def serialize(msg: Message) -> bytes:
    """Wire bytes (CRLF) of ``msg`` without refolding any header read from a source."""
    try:
        if isinstance(msg.policy, email.policy.EmailPolicy):
            return msg.as_bytes(policy=POLICY)
        # A legacy compat32 message: its own policy folds its plain-string headers.
        return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    except (UnicodeError, TypeError, ValueError, LookupError) as exc:
        raise MessageError(f"cannot serialize the message: {exc}") from None


def recipients(msg: Message, *, include_bcc: bool = False) -> list[str]:
    """Distinct addresses named in To and Cc (and Bcc), in order, compared case-insensitively."""
    names = ["To", "Cc", "Bcc"] if include_bcc else ["To", "Cc"]
    values = [str(v) for n in names for v in (msg.get_all(n) or [])]
    out: list[str] = []
    seen: set[str] = set()
    for _, addr in getaddresses(values):
        if addr and "@" in addr and addr.lower() not in seen:
            seen.add(addr.lower())
            out.append(addr)
    return out


# -- body links ----------------------------------------------------------------------------


def _body_parts(part: Message) -> Iterator[Message]:
    """The text/plain and text/html parts a reader sees as the message body."""
    if part.get_content_maintype() == "message":
        return  # a forwarded message belongs to someone else
    if part.is_multipart():
        for sub in part.get_payload():
            if isinstance(sub, Message):
                yield from _body_parts(sub)
        return
    if part.get_content_type() not in ("text/plain", "text/html"):
        return
    if part.get_content_disposition() == "attachment" or part.get_filename():
        return
    yield part


@lru_cache(maxsize=64)
def _codec(charset: str) -> tuple[str, bool]:
    """(Python codec name, whether it is ASCII-compatible) for a MIME charset."""
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        # Unknown charset: latin-1 round-trips every byte, and the link we add is ASCII.
        return "latin-1", True
    try:
        compatible = "a\n".encode(name) == b"a\n"
    except (UnicodeError, LookupError):
        compatible = False
    return name, compatible


def _with_link(text: str, url: str, footer: Footer, is_html: bool) -> tuple[str, str, str]:
    """Split ``text`` into (head, inserted, tail) with the link placed.

    The inserted piece is separate so it can be encoded with a different error handler
    (HTML character references) from the original text (whose bytes must round-trip).
    """
    value = html.escape(url, quote=True) if is_html else url
    new, n = _PLACEHOLDER.subn(lambda _m: value, text)
    if is_html:
        new, m = _PLACEHOLDER_PCT.subn(lambda _m: value, new)
        n += m
    if n:
        return new, "", ""
    nl = "\r\n" if "\r\n" in text else "\n"
    if not is_html:
        added = footer.text.replace("{unsubscribe_url}", value).replace("\r\n", "\n")
        return text, added.replace("\n", nl), ""
    snippet = footer.html.replace("{unsubscribe_url}", value)
    ends = list(_BODY_END.finditer(text)) or list(_HTML_END.finditer(text))
    if not ends:
        return text, nl + snippet + nl, ""
    at = ends[-1].start()
    return text[:at], snippet + nl, text[at:]


def _set_cte(part: Message, cte: str) -> None:
    if "Content-Transfer-Encoding" in part:
        part.replace_header("Content-Transfer-Encoding", cte)
    else:
        part["Content-Transfer-Encoding"] = cte


def _qp(data: bytes, textual: bool) -> str:
    if textual:
        data = data.replace(b"\r\n", b"\n")
    return binascii.b2a_qp(data, istext=textual).decode("ascii")


def _link_part(part: Message, url: str, footer: Footer) -> None:
    is_html = part.get_content_type() == "text/html"
    cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower() or "7bit"
    if cte not in ("7bit", "8bit", "binary", "quoted-printable", "base64"):
        raise MessageError(f"cannot re-encode a part with Content-Transfer-Encoding {cte!r}")
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        raise MessageError("a text part has no decodable body")
    charset = part.get_content_charset() or "us-ascii"
    codec, ascii_ok = _codec(charset)
    text = raw.decode(codec, "surrogateescape")
    head, inserted, tail = _with_link(text, url, footer, is_html)
    try:
        added = inserted.encode(codec)
    except UnicodeEncodeError:
        if is_html:
            added = inserted.encode(codec, "xmlcharrefreplace")
        elif ascii_ok and not _has_surrogates(text):
            # The footer needs characters the part's charset lacks: move the part to UTF-8.
            codec = "utf-8"
            part.set_param("charset", "utf-8")
            added = inserted.encode(codec)
        else:
            added = inserted.encode(codec, "replace")
    data = head.encode(codec, "surrogateescape") + added + tail.encode(codec, "surrogateescape")

    if cte == "base64":
        payload = base64.encodebytes(data).decode("ascii")
    elif cte == "quoted-printable":
        payload = _qp(data, ascii_ok)
    elif not ascii_ok:
        # UTF-16 and friends cannot travel as 7bit/8bit text at all.
        payload = base64.encodebytes(data).decode("ascii")
        _set_cte(part, "base64")
    else:
        too_long = max((len(line) for line in data.split(b"\n")), default=0) > _MAX_LINE
        if data.isascii() and not too_long:
            payload = data.decode("ascii")
        elif cte in ("8bit", "binary") and not too_long:
            # Kept as raw bytes; BytesGenerator writes surrogate-escaped text back verbatim.
            payload = data.decode("ascii", "surrogateescape")
        else:
            payload = _qp(data, True)
            _set_cte(part, "quoted-printable")
    part.set_payload(payload)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def add_body_links(msg: Message, url: str, footer: Footer | None = None) -> int:
    """Put a visible ``url`` into every body text part of ``msg``; return how many."""
    footer = footer or Footer()
    count = 0
    for part in _body_parts(msg):
        _link_part(part, url, footer)
        count += 1
    return count


# -- the whole preparation -----------------------------------------------------------------


def _msgid(value: str) -> str:
    value = value.strip()
    return value if value.startswith("<") and value.endswith(">") else f"<{value}>"


def prepare_message(
    message: EmailMessage | Message | bytes,
    *,
    headers: UnsubscribeHeaders | None,
    body_url: str | None = None,
    footer: Footer | None = None,
    signers: Sequence[DKIMSigner] = (),
    date: float | None = None,
    message_id: str | None = None,
) -> bytes:
    """One recipient's copy of ``message``, ready to send (see the module docstring).

    ``headers`` are that recipient's fields (``None``: transactional mail or a disabled brand
    — the message's own fields are then left as they are); ``body_url`` is the visible link
    (defaults to the one-click URL); ``date`` (epoch seconds) and ``message_id`` are only
    used when the message lacks ``Date``/``Message-ID``.
    """
    msg = parse_message(message)
    if "From" not in msg:
        raise MessageError("the message has no From field (DKIM signs it; mail needs one)")
    if date is not None and "Date" not in msg:
        # A numeric zone: RFC 5322 lists "GMT" only as obsolete syntax.
        msg["Date"] = format_datetime(datetime.fromtimestamp(date, UTC))
    if message_id is not None and "Message-ID" not in msg:
        msg["Message-ID"] = _msgid(message_id)
    del msg["Bcc"]
    # Earlier signatures (from the ESP a message came through, or a previous run) no longer
    # match once the body or the fields change; the new ones are made below.
    del msg["DKIM-Signature"]
    if headers is not None:
        set_unsubscribe_headers(msg, headers)
        link = body_url or headers.url or headers.mailto
        if link is None:
            raise MessageError("no URL for the visible unsubscribe link")
        if add_body_links(msg, link, footer) == 0:
            raise MessageError(
                "the message has no text/plain or text/html body part to carry the "
                "visible unsubscribe link"
            )
    return sign_message(serialize(msg), signers)
