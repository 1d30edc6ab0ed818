"""``unsubkit prepare``: one recipient's copy of a message, ready to send."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..errors import UnsubkitError
from ..prepare import prepare as prepare_message
from .common import fail, open_kit

__all__ = ["register"]


def _read(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        fail(f"cannot read {source}: {exc.strerror}")


def _write(target: str, data: bytes) -> None:
    if target == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        Path(target).write_bytes(data)
    except OSError as exc:
        fail(f"cannot write {target}: {exc.strerror}")


def prepare(
    ctx: typer.Context,
    source: str = typer.Argument(..., metavar="IN.eml", help="The message; - reads stdin."),
    to: str = typer.Option(..., "--to", help="The one recipient (tokens are per recipient)."),
    purpose: str = typer.Option(..., "--purpose", help="Purpose name, e.g. marketing."),
    topic: str | None = typer.Option(None, "--topic", help="Topic within the purpose."),
    brand: str | None = typer.Option(None, "--brand", help="Brand (default: default)."),
    message_id: str | None = typer.Option(
        None, "--message-id", help="Message id the token records (default: the message's)."
    ),
    output: str = typer.Option("-", "--output", "-o", help="Where to write; - is stdout."),
) -> None:
    """Add List-Unsubscribe fields and a body link for one recipient, then DKIM-sign.

    Transactional purposes get no fields and no link, and are still signed with the
    brand's keys. Output keeps the input's line endings (LF in, LF out).
    """
    raw = _read(source)
    if not raw.strip():
        fail(f"{'stdin' if source == '-' else source} is empty")
    kit = open_kit(ctx)
    try:
        out = prepare_message(
            kit, raw, to=to, purpose=purpose, topic=topic, brand=brand, message_id=message_id
        )
    except UnsubkitError as exc:
        fail(str(exc))
    finally:
        kit.close()
    if b"\r\n" not in raw:
        # The signature covers the CRLF form; an MTA turns these LFs back into CRLF.
        out = out.replace(b"\r\n", b"\n")
    _write(output, out)


def register(app: typer.Typer) -> None:
    app.command("prepare")(prepare)
