"""Shared CLI plumbing: the root Typer app, settings loading, output helpers."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

from ..errors import UnsubkitError
from ..service import Unsubkit
from ..settings import Settings, load_settings

__all__ = ["app", "err_console", "fail", "get_settings", "open_kit", "print_json"]

app = typer.Typer(
    name="unsubkit",
    help="One-click unsubscribe (RFC 8058 / RFC 2369) for any email sender.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Settings file (default: $UNSUBKIT_CONFIG or ./unsubkit.toml)."
    ),
) -> None:
    if config is not None:
        os.environ["UNSUBKIT_CONFIG"] = str(config)
    ctx.obj = {}


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    sys.exit(code)


def get_settings(ctx: typer.Context | None = None) -> Settings:
    if ctx is not None and isinstance(ctx.obj, dict) and "settings" in ctx.obj:
        settings: Settings = ctx.obj["settings"]
        return settings
    try:
        settings = load_settings()
    except UnsubkitError as exc:
        fail(str(exc))
    if ctx is not None:
        if not isinstance(ctx.obj, dict):
            ctx.obj = {}
        ctx.obj["settings"] = settings
    return settings


def open_kit(ctx: typer.Context | None = None, *, settings: Settings | None = None) -> Unsubkit:
    settings = settings or get_settings(ctx)
    if not settings.keys_path.exists():
        fail(f"not initialized: no key ring at {settings.keys_path} (run `unsubkit init`)")
    try:
        return Unsubkit.open(settings)
    except UnsubkitError as exc:
        fail(str(exc))


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
