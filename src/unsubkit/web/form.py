"""Reading the one-click request body (RFC 8058 section 3.1).

Mailbox providers send ``List-Unsubscribe=One-Click`` as ``application/x-www-form-urlencoded``
(Gmail), as ``multipart/form-data`` (what the RFC prefers), or send no body at all; all three are
accepted. A form that carries other fields but not that pair is refused.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

__all__ = ["BadForm", "OneClickForm", "parse_one_click"]

PAIR = ("List-Unsubscribe", "One-Click")
#: Hidden field of our own landing-page form, to record the right mechanism.
VIA_FIELD = "via"


class BadForm(ValueError):
    """The body is not an acceptable one-click form; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class OneClickForm:
    empty: bool
    has_pair: bool
    via: str | None


async def _once(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body
    yield b""


_EMPTY = OneClickForm(empty=True, has_pair=False, via=None)
_PAIR_ONLY = OneClickForm(empty=False, has_pair=True, via=None)
_PAIR_BODY = b"List-Unsubscribe=One-Click"


async def parse_one_click(headers: Headers, body: bytes) -> OneClickForm:
    if not body.strip():
        return _EMPTY
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if body.rstrip(b"\r\n") == _PAIR_BODY and ctype != "multipart/form-data":
        # What Gmail and most providers send, byte for byte: no need for a form parser.
        return _PAIR_ONLY
    fields: list[tuple[str, str]]
    try:
        if ctype == "multipart/form-data":
            form = await MultiPartParser(headers, _once(body), max_files=0, max_fields=20).parse()
            fields = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        elif ctype == "application/x-www-form-urlencoded":
            form = await FormParser(headers, _once(body), max_fields=20).parse()
            fields = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        else:
            # text/plain or a missing Content-Type: some clients send the pair that way.
            fields = parse_qsl(body.decode("utf-8").strip(), keep_blank_values=True, strict_parsing=True)
    except (MultiPartException, UnicodeDecodeError, ValueError) as exc:
        raise BadForm(f"unreadable form body ({ctype or 'no content type'})") from exc
    has_pair = any(k == PAIR[0] and v.strip() == PAIR[1] for k, v in fields)
    via = next((v for k, v in fields if k == VIA_FIELD), None)
    if not has_pair:
        raise BadForm("form does not contain List-Unsubscribe=One-Click")
    return OneClickForm(empty=False, has_pair=True, via=via)
