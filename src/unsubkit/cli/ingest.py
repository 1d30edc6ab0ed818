"""``ingest``: the mailto pipe for MTAs, and mbox / Maildir ingest after the fact."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import ConfigError, UnsubkitError
from ..mail.ingest import (
    MAX_PIPE_MESSAGE,
    Exit,
    IngestResult,
    MailboxSummary,
    ingest_mailbox,
    ingest_message,
    iter_maildir,
    iter_mbox,
)
from ..mail.listener import from_checker_for
from ..mail.processor import MailtoProcessor
from ..service import Unsubkit
from ..settings import Settings, load_settings
from .common import err_console, fail, print_json

__all__ = ["ingest", "register"]


def _open(ctx: typer.Context, code: int) -> Unsubkit:
    """The kit, or one line on stderr and ``code`` (75 in pipe mode: the MTA retries)."""
    try:
        settings: Settings | None = ctx.obj.get("settings") if isinstance(ctx.obj, dict) else None
        settings = settings or load_settings()
        if not settings.keys_path.exists():
            raise ConfigError(f"not initialized: no key ring at {settings.keys_path} (run `unsubkit init`)")
        return Unsubkit.open(settings)
    except UnsubkitError as exc:
        fail(str(exc), code)


def _processor(kit: Unsubkit, code: int) -> MailtoProcessor:
    try:
        return MailtoProcessor(kit, from_checker=from_checker_for(kit.settings))
    except UnsubkitError as exc:
        fail(str(exc), code)


def _pipe(ctx: typer.Context, recipients: list[str], sender: str | None, as_json: bool) -> None:
    data = sys.stdin.buffer.read(MAX_PIPE_MESSAGE + 1)
    kit = _open(ctx, Exit.TEMPFAIL)
    try:
        result = ingest_message(_processor(kit, Exit.TEMPFAIL), data, recipients=recipients,
                                sender=sender)
    except Exception as exc:  # noqa: BLE001 - an MTA must get a status, never a traceback
        fail(f"internal error ({type(exc).__name__}); the message will be retried", Exit.TEMPFAIL)
    finally:
        kit.close()
    if as_json:
        print_json(_result_json(result))
    if result.exit is not Exit.OK:
        fail(result.detail, result.exit)


def _result_json(r: IngestResult) -> dict[str, object]:
    return {"status": r.status, "exit": int(r.exit), "detail": r.detail, "events": r.events,
            "changed": r.changed}


def _mailbox(ctx: typer.Context, path: Path, kind: str, recipients: list[str], as_json: bool) -> None:
    kit = _open(ctx, 1)
    try:
        processor = _processor(kit, 1)
        try:
            total, items = iter_mbox(path) if kind == "mbox" else iter_maildir(path)
        except (UnsubkitError, OSError) as exc:
            fail(str(exc))
        with Progress(TextColumn("ingest {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err_console, transient=True) as bar:
            task = bar.add_task(path.name, total=total)
            summary = ingest_mailbox(processor, items, recipients=recipients,
                                     batch=kit.settings.max_batch,
                                     progress=lambda: bar.advance(task))
    finally:
        kit.close()
    if as_json:
        print_json(summary.as_json())
    else:
        _print_summary(path, summary)
    if summary.error:
        fail(summary.error, Exit.TEMPFAIL)


def _print_summary(path: Path, s: MailboxSummary) -> None:
    table = Table("outcome", "messages", title=f"{s.messages} message(s) in {path.name}")
    table.add_row("recorded", f"{s.recorded} ({s.events} event(s), {s.changed} changed)")
    table.add_row("dropped (bounces, reports)", str(s.dropped))
    for reason, n in s.refused.most_common():
        table.add_row(f"refused: {reason}", str(n))
    for reason, n in s.invalid.most_common():
        table.add_row(f"unusable: {reason}", str(n))
    if s.retry:
        table.add_row("to retry (temporary failure)", str(s.retry))
    Console().print(table)


def ingest(
    ctx: typer.Context,
    recipient: list[str] = typer.Option(
        [], "--recipient", "-r",
        help="Envelope recipient (repeatable; Postfix: --recipient=${recipient}). "
             "Default: the message's Delivered-To / X-Original-To."),
    sender: str | None = typer.Option(
        None, "--sender", "-f",
        help="Envelope sender (Postfix: --sender=${sender}; empty for a bounce). "
             "Default: the message's Return-Path."),
    mbox: Path | None = typer.Option(None, "--mbox", help="Process every message of an mbox file."),
    maildir: Path | None = typer.Option(None, "--maildir", help="Process every message of a Maildir."),
    as_json: bool = typer.Option(False, "--json", help="Print the result (or summary) as JSON."),
) -> None:
    """Process mail sent to the unsubscribe address: one message on stdin (Postfix pipe(8),
    procmail, .forward) or a whole mailbox.

    Exit status (sysexits): 0 done or bounce dropped, 65 unusable message, 67 no such user,
    75 temporary failure (retry), 77 sender not proven.
    """
    if mbox is not None and maildir is not None:
        fail("give --mbox or --maildir, not both", 64)
    if mbox is not None:
        _mailbox(ctx, mbox, "mbox", recipient, as_json)
    elif maildir is not None:
        _mailbox(ctx, maildir, "maildir", recipient, as_json)
    else:
        _pipe(ctx, recipient, sender, as_json)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
