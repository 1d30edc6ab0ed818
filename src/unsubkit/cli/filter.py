"""``filter``: keep the recipients of a list who may receive a purpose/topic."""

from __future__ import annotations

import contextlib
import json
from typing import TextIO

import typer

from ..lists.filter import filter_list
from ..lists.reader import ListReader
from .common import err_console, open_kit
from .listio import STDIO, open_input, open_output, progress_bar

__all__ = ["filter_command", "register"]


def filter_command(
    ctx: typer.Context,
    source: str = typer.Argument(STDIO, metavar="[IN]",
                                 help="Recipient list: one address a line, or CSV (default: stdin)."),
    purpose: str = typer.Option(..., "--purpose", help="Purpose of the mailing."),
    topic: str | None = typer.Option(None, "--topic", help="Topic within the purpose."),
    brand: str | None = typer.Option(None, "--brand", help="Sending brand (must exist)."),
    output: str | None = typer.Option(None, "--output", "-o",
                                      help="Where the sendable rows go (default: stdout)."),
    column: str | None = typer.Option(None, "--column",
                                      help="CSV column holding the address (default: email)."),
    blocked: str | None = typer.Option(None, "--blocked",
                                       help="Write the other rows here as CSV line,email,reason."),
    as_json: bool = typer.Option(False, "--json", help="Counts as JSON on stderr."),
) -> None:
    """Write the rows of IN that may be sent to, unchanged and in order.

    Rows of opted-out addresses (purpose, topic, or the contact's bulk-email switch) and invalid
    addresses are dropped; counts go to stderr. Streams: memory does not grow with the list.
    """
    kit = open_kit(ctx)
    try:
        if brand is not None:
            kit.settings.brand(brand)  # an unknown brand is an error, not a silent default
        # Load the opt-outs before touching any output: errors surface with nothing written.
        index = kit.blocked_index(purpose, topic)
        with open_input(source) as (stream, size):
            reader = ListReader(stream, column=column)
            with contextlib.ExitStack() as stack:
                out = stack.enter_context(open_output(output))
                blocked_out: TextIO | None = (
                    stack.enter_context(open_output(blocked)) if blocked is not None else None
                )
                bar = stack.enter_context(progress_bar("filtering", size))
                stats = filter_list(reader, index, out, blocked_out=blocked_out, on_progress=bar)
    finally:
        kit.close()
    if as_json:
        typer.echo(json.dumps(stats.as_json()), err=True)
    else:
        err_console.print(stats.summary(), highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("filter")(filter_command)
