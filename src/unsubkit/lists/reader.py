"""Read recipient and suppression lists in bounded chunks (memory does not grow with the list).

Two shapes are accepted:

- **lines**: one address a line (LF or CRLF line ends); recognised by a first line that holds
  an ``@`` or has a single field that is not a known column name;
- **CSV**: a header row (no ``@`` in it) and an address column — named by ``column=``, else the first of
  ``email``, ``email address``, ``email_address``, ``e-mail``, ``emailaddress``, ``recipient``
  (case and punctuation ignored), as SendGrid, Mailchimp and SES exports name it. The delimiter
  is the one of ``, ; TAB |`` that occurs most in the header.

Rows are kept exactly as read (``Chunk.raws``, without the final line end) so a filter can write
the rows it keeps unchanged, and every row knows its line number for error reports. Text is
decoded as UTF-8 with ``surrogateescape``: bytes that are not UTF-8 make the address invalid but
are written back unchanged.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, TextIO

from ..errors import UnsubkitError

__all__ = ["EMAIL_COLUMNS", "Chunk", "ListError", "ListReader"]

EMAIL_COLUMNS = ("email", "emailaddress", "e-mail", "recipient", "recipientemail", "address")
_DELIMITERS = (",", ";", "\t", "|")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
BOM = "\ufeff"


class ListError(UnsubkitError):
    """A list cannot be read as asked (no address column, unreadable input)."""


def _header_key(name: str) -> str:
    return _NON_ALNUM.sub("", name.strip().lstrip(BOM).lower())


_KNOWN = {_header_key(c) for c in EMAIL_COLUMNS}


@dataclass(slots=True)
class Chunk:
    """A run of rows. ``values[i]`` is the address field of ``raws[i]`` (not yet stripped)."""

    raws: list[str]
    values: list[str]
    first_line: int
    #: Per-row line numbers when rows can span lines (CSV); ``None``: consecutive.
    line_nos: list[int] | None = None
    #: ``"\n".join(values)`` when the reader has it for free (lines), for bulk lowercasing.
    joined: str | None = None
    #: Characters of input consumed (for progress bars).
    size: int = 0

    def line_no(self, i: int) -> int:
        return self.line_nos[i] if self.line_nos is not None else self.first_line + i


@dataclass
class ListReader:
    """Reads ``stream`` (opened with ``newline=""``) as lines or CSV, chunk by chunk."""

    stream: TextIO
    column: str | None = None
    chunk_chars: int = 1 << 20
    rows_per_chunk: int = 8192
    kind: Literal["lines", "csv"] = field(init=False, default="lines")
    #: The CSV header row as read (without its final ``\n``), ``None`` for lines.
    header: str | None = field(init=False, default=None)
    column_index: int = field(init=False, default=0)
    delimiter: str = field(init=False, default=",")
    _pending: str = field(init=False, default="")
    _eof: bool = field(init=False, default=False)
    _first: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        first = self._read_line()
        self._sniff(first)

    # -- raw input ------------------------------------------------------------------------

    def _fill(self) -> str:
        """Next block of complete lines (the last one may lack a line end at EOF)."""
        while not self._eof:
            data = self.stream.read(self.chunk_chars)
            if not data:
                self._eof = True
                break
            self._pending += data
            cut = self._pending.rfind("\n")
            if cut >= 0:
                block, self._pending = self._pending[: cut + 1], self._pending[cut + 1 :]
                return block
        block, self._pending = self._pending, ""
        return block

    def _read_line(self) -> str | None:
        while "\n" not in self._pending and not self._eof:
            data = self.stream.read(self.chunk_chars)
            if not data:
                self._eof = True
            self._pending += data
        if not self._pending:
            return None
        cut = self._pending.find("\n")
        if cut < 0:
            line, self._pending = self._pending, ""
        else:
            line, self._pending = self._pending[: cut + 1], self._pending[cut + 1 :]
        return line

    # -- format ---------------------------------------------------------------------------

    def _sniff(self, first: str | None) -> None:
        if first is None:
            return
        raw = first[:-1] if first.endswith("\n") else first
        text = raw.rstrip("\r")
        if self.column is None and (not text.lstrip(BOM).strip() or "@" in text):
            # A blank line or an address: no header, one address a line.
            self._first = first
            return
        counts = {d: text.count(d) for d in _DELIMITERS}
        delimiter = max(_DELIMITERS, key=lambda d: counts[d])
        if counts[delimiter] == 0:
            delimiter = ","
        fields = next(csv.reader([text.lstrip(BOM)], delimiter=delimiter), [])
        keys = [_header_key(f) for f in fields]
        if self.column is not None:
            wanted = _header_key(self.column)
            if wanted not in keys:
                raise ListError(
                    f"no column {self.column!r} in the header "
                    f"(columns: {', '.join(f.strip() for f in fields) or 'none'})"
                )
            self._csv(raw, delimiter, keys.index(wanted))
            return
        if len(fields) > 1:
            for cand in EMAIL_COLUMNS:
                key = _header_key(cand)
                if key in keys:
                    self._csv(raw, delimiter, keys.index(key))
                    return
            raise ListError(
                "the first row looks like a CSV header without an email column "
                f"(columns: {', '.join(f.strip() for f in fields)}); name it with --column"
            )
        if keys and keys[0] in _KNOWN:
            self._csv(raw, delimiter, 0)
            return
        # One address a line, starting with this very line.
        self._first = first

    def _csv(self, header: str, delimiter: str, index: int) -> None:
        self.kind = "csv"
        self.header = header
        self.delimiter = delimiter
        self.column_index = index

    # -- chunks ---------------------------------------------------------------------------

    def chunks(self) -> Iterator[Chunk]:
        return self._line_chunks() if self.kind == "lines" else self._csv_chunks()

    def _line_chunks(self) -> Iterator[Chunk]:
        line_no = 1
        carry = self._first or ""
        self._first = None
        strip_bom = carry.startswith(BOM)
        while True:
            block = carry + self._fill()
            carry = ""
            if not block:
                return
            body = block[:-1] if block.endswith("\n") else block
            raws = body.split("\n")
            joined = body
            if "\r" in block:
                # CRLF line ends: values without the CR, raws (the output) keep it.
                norm = block.replace("\r\n", "\n")
                joined = norm[:-1] if norm.endswith("\n") else norm
            if strip_bom:
                # The byte-order mark belongs to the file, not to the first address; the raw
                # row (and so the output) keeps it.
                joined = joined[1:]
                strip_bom = False
            values = raws if joined is body else joined.split("\n")
            yield Chunk(raws, values, line_no, joined=joined, size=len(block))
            line_no += len(raws)

    def _csv_chunks(self) -> Iterator[Chunk]:
        consumed: list[str] = []
        line_no = 2  # the header was line 1

        def source() -> Iterator[str]:
            while True:
                block = self._fill()
                if not block:
                    return
                lines = block.split("\n")
                last = lines.pop()
                for line in lines:
                    line += "\n"
                    consumed.append(line)
                    yield line
                if last:
                    consumed.append(last)
                    yield last

        reader = csv.reader(source(), delimiter=self.delimiter)
        idx = self.column_index
        raws: list[str] = []
        values: list[str] = []
        nos: list[int] = []
        size = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise ListError(f"line {line_no}: unreadable CSV ({exc})") from None
            raw = "".join(consumed)
            consumed.clear()
            size += len(raw)
            start = line_no
            line_no += raw.count("\n") or 1
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line is not a recipient
            raws.append(raw[:-1] if raw.endswith("\n") else raw)
            values.append(row[idx] if idx < len(row) else "")
            nos.append(start)
            if len(raws) >= self.rows_per_chunk:
                yield Chunk(raws, values, nos[0], line_nos=nos, size=size)
                raws, values, nos, size = [], [], [], 0
        if raws:
            yield Chunk(raws, values, nos[0], line_nos=nos, size=size)
