"""A lenient, read-only view of a raw message for the checker (pure).

Real-world mail is often broken, and the checker must report on it rather than fail, so this
never raises: header fields are split on raw bytes (keeping every physical line, to measure
line lengths and see folds exactly as sent) and MIME parts are read through the stdlib's
``compat32`` parser, with every step guarded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses

__all__ = ["BodyPart", "HeaderField", "ParsedMessage", "parse_message"]

#: Bound the work done on hostile input (a message with thousands of parts).
MAX_PARTS = 200
MAX_PART_CHARS = 2_000_000

_FIELD_NAME = re.compile(rb"^[\x21-\x39\x3b-\x7e]+$")


@dataclass(frozen=True, slots=True)
class HeaderField:
    name: str
    #: Physical lines as sent (without line ends); the first one starts with ``Name:``.
    lines: tuple[bytes, ...]
    #: 1-based line number of the first physical line in the message.
    lineno: int

    @property
    def raw_value(self) -> bytes:
        """The value with its folds kept (CRLF between physical lines), after ``Name:``."""
        first = self.lines[0].split(b":", 1)[1] if b":" in self.lines[0] else b""
        return b"\r\n".join((first, *self.lines[1:]))

    @property
    def value(self) -> str:
        """The unfolded value as text (bytes outside ASCII shown as U+FFFD), stripped."""
        text = self.raw_value.decode("utf-8", errors="replace")
        return re.sub(r"\r?\n(?=[ \t])", "", text).strip()

    def is_named(self, name: str) -> bool:
        return self.name.lower() == name.lower()


@dataclass(frozen=True, slots=True)
class BodyPart:
    subtype: str  # "plain" or "html"
    text: str
    charset: str


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    raw: bytes
    fields: tuple[HeaderField, ...]
    #: Every physical line of the message, without line ends.
    lines: tuple[bytes, ...]
    header_line_count: int
    parts: tuple[BodyPart, ...]
    defects: tuple[str, ...] = field(default=())

    def get_all(self, name: str) -> list[HeaderField]:
        return [f for f in self.fields if f.is_named(name)]

    def first(self, name: str) -> HeaderField | None:
        found = self.get_all(name)
        return found[0] if found else None

    def count(self, name: str) -> int:
        return len(self.get_all(name))

    @property
    def subject(self) -> str:
        f = self.first("Subject")
        return decode_words(f.value) if f else ""

    @property
    def message_id(self) -> str:
        f = self.first("Message-ID")
        return f.value if f else ""

    @property
    def from_value(self) -> str:
        f = self.first("From")
        return decode_words(f.value) if f else ""

    @property
    def from_addresses(self) -> list[str]:
        fields = self.get_all("From")
        if not fields:
            return []
        try:
            pairs = getaddresses([f.value for f in fields])
        except Exception:  # noqa: BLE001 - the stdlib's address parser has raised on odd input before
            return []
        return [addr for _, addr in pairs if addr]

    @property
    def from_domain(self) -> str | None:
        """The domain of the single From address, or ``None`` if there is not exactly one."""
        addrs = self.from_addresses
        if len(addrs) != 1:
            return None
        _, at, domain = addrs[0].rpartition("@")
        domain = domain.strip().strip(">").rstrip(".").lower()
        return domain if at and domain and "." in domain else None

    def parts_of(self, subtype: str) -> list[BodyPart]:
        return [p for p in self.parts if p.subtype == subtype]


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words for display; the raw value if that fails."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # noqa: BLE001 - malformed encoded words or unknown charsets: show them as they are
        return value


def _split_lines(raw: bytes) -> list[bytes]:
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def _header_fields(lines: list[bytes]) -> tuple[list[HeaderField], int, list[str]]:
    fields: list[HeaderField] = []
    defects: list[str] = []
    current: list[bytes] = []
    current_name = ""
    start = 0
    end = len(lines)

    def flush() -> None:
        if current:
            fields.append(HeaderField(current_name, tuple(current), start + 1))

    for i, line in enumerate(lines):
        if line == b"":
            end = i
            break
        if i == 0 and line.startswith(b"From "):
            # mbox separator line that was left on the message
            continue
        if line[:1] in (b" ", b"\t"):
            if current:
                current.append(line)
            else:
                defects.append(f"line {i + 1}: continuation line before any header field")
            continue
        name, colon, _ = line.partition(b":")
        if colon and _FIELD_NAME.match(name):
            flush()
            current = [line]
            current_name = name.decode("ascii")
            start = i
            continue
        defects.append(f"line {i + 1}: not a header field; the header section ends here")
        end = i
        break
    flush()
    return fields, end, defects


def _decode_part(part: Message) -> BodyPart | None:
    if part.get_content_maintype() != "text":
        return None
    subtype = part.get_content_subtype()
    if subtype not in ("plain", "html"):
        return None
    disposition = str(part.get("Content-Disposition", "")).lower()
    if disposition.startswith("attachment"):
        return None
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return None
    charset = part.get_content_charset() or "utf-8"
    try:
        text = payload.decode(charset, errors="replace")
    except LookupError:
        text = payload.decode("utf-8", errors="replace")
        charset = "utf-8"
    return BodyPart(subtype, text[:MAX_PART_CHARS], charset)


def _body_parts(raw: bytes) -> tuple[list[BodyPart], list[str]]:
    parts: list[BodyPart] = []
    try:
        msg = message_from_bytes(raw, policy=compat32)
        for n, part in enumerate(msg.walk()):
            if n >= MAX_PARTS:
                return parts, [f"more than {MAX_PARTS} MIME parts; the rest was not read"]
            decoded = _decode_part(part)
            if decoded is not None:
                parts.append(decoded)
    except Exception as exc:  # noqa: BLE001 - deliberately broad: the stdlib's MIME parser fails in many ways
        return parts, [f"MIME structure could not be read ({type(exc).__name__})"]
    return parts, []


def parse_message(raw: bytes) -> ParsedMessage:
    """Read ``raw`` leniently. Never raises on any input bytes."""
    lines = _split_lines(raw)
    fields, header_end, defects = _header_fields(lines)
    parts, part_defects = _body_parts(raw)
    return ParsedMessage(
        raw=raw,
        fields=tuple(fields),
        lines=tuple(lines),
        header_line_count=header_end,
        parts=tuple(parts),
        defects=tuple(defects + part_defects),
    )
