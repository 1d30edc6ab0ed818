"""File plumbing for the list commands (``filter``, ``consent import|export``).

Inputs and outputs are UTF-8 with ``surrogateescape`` and no newline translation, so rows pass
through byte for byte. A named output file is written beside its target and renamed into place
only on success: a half-written recipient list must never look like a finished one.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from ..errors import UnsubkitError

__all__ = ["open_input", "open_output", "progress_bar"]

STDIO = "-"


@contextlib.contextmanager
def open_input(path: str) -> Iterator[tuple[TextIO, int | None]]:
    """``(stream, size in bytes or None)``; ``-`` is standard input."""
    if path == STDIO:
        yield io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape",
                               newline=""), None
        return
    try:
        fh = open(path, encoding="utf-8", errors="surrogateescape", newline="")  # noqa: SIM115
    except OSError as exc:
        raise UnsubkitError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        try:
            size: int | None = os.fstat(fh.fileno()).st_size if Path(path).is_file() else None
        except OSError:
            size = None
        yield fh, size


@contextlib.contextmanager
def open_output(path: str | None) -> Iterator[TextIO]:
    """Standard output for ``None``/``-``; else a temp file renamed to ``path`` on success."""
    if path is None or path == STDIO:
        out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", errors="surrogateescape",
                               newline="", write_through=False)
        try:
            yield out
        finally:
            out.flush()
            out.detach()
        return
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                   dir=target.parent if str(target.parent) else ".")
    except OSError as exc:
        raise UnsubkitError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with open(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as fh:
            yield fh
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def progress_bar(label: str, total: int | None) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar on standard error when it is a terminal, else nothing at all."""
    if not sys.stderr.isatty():
        yield None
        return
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=total)

        def advance(n: int) -> None:
            progress.advance(task, n)

        yield advance
