"""``probe``: act like a mailbox provider against a one-click URL."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..audit import Verdict
from ..probe import CHANGED_HEADER, HttpxSender, run_probe
from .check import findings_table, verdict_text
from .common import fail, print_json

__all__ = ["probe", "register"]


def probe(
    url: str = typer.Argument(..., help="The one-click URL (the https URI from List-Unsubscribe)."),
    token_check: bool = typer.Option(
        False, "--token-check",
        help=f"Against an unsubkit server: check via {CHANGED_HEADER} that GET/HEAD changed nothing "
             "and that repeated POSTs are idempotent. Use a fresh token.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the exchanges and findings as JSON."),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds per request."),
    slow: float = typer.Option(2.0, "--slow", min=0.0, help="Answers slower than this many seconds are flagged."),
    cacert: Path | None = typer.Option(None, "--cacert", exists=True, dir_okay=False,
                                       help="Trust this CA bundle (PEM) for HTTPS."),
    insecure: bool = typer.Option(False, "--insecure", help="Do not verify the TLS certificate."),
) -> None:
    """Probe a one-click endpoint like Gmail does: GET, then urlencoded, multipart and empty POSTs.

    The POSTs are real: the token is unsubscribed. Exit status: 0 when nothing is at error level,
    1 when something is, 2 on a usage error.
    """
    verify: bool | str = False if insecure else (str(cacert) if cacert else True)
    try:
        sender = HttpxSender(timeout=timeout, verify=verify)
        report = run_probe(url, sender, token_check=token_check, slow_after=slow)
    except ValueError as exc:
        fail(str(exc), 2)
    if as_json:
        print_json(report.to_dict())
    else:
        console = Console()
        table = Table("request", "status", "time", "size", "type", "location", "set-cookie", "changed",
                      title=report.url, title_justify="left")
        for e in report.exchanges:
            status = Text(str(e.status) if e.status is not None else "-",
                          style="green" if e.status and 200 <= e.status < 300 else "red")
            table.add_row(
                e.request.name, status if e.error is None else Text(e.error, style="red"),
                f"{e.elapsed * 1000:.0f} ms", str(e.body_size),
                (e.header("Content-Type") or "").split(";")[0], e.location or "",
                ", ".join(c.split("=", 1)[0] for c in e.set_cookies), e.header(CHANGED_HEADER) or "",
            )
        console.print(table)
        tls = next((e.tls for e in report.exchanges if e.tls), None)
        if tls:
            console.print(f"TLS: {tls.version}, {tls.cipher}; certificate {tls.subject or '(not verified)'}"
                          f"{', issued by ' + tls.issuer if tls.issuer else ''}"
                          f"{', valid until ' + tls.not_after if tls.not_after else ''}", highlight=False)
        if report.findings:
            console.print(findings_table(report.findings))
        line = Text("verdict: ")
        line.append_text(verdict_text(report.verdict))
        console.print(line)
    raise typer.Exit(1 if report.verdict is Verdict.FAIL else 0)


def register(app: typer.Typer) -> None:
    app.command("probe")(probe)
