"""``check``: the compliance checker for any message (.eml files, an mbox, or stdin)."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from ..audit import (
    CheckOptions,
    Finding,
    KeyLookup,
    OwnTokens,
    Report,
    Severity,
    StaticKeys,
    Verdict,
    check_message,
    dns_lookup,
    key_record_from_bytes,
    split_mbox,
)
from ..errors import UnsubkitError
from ..settings import Settings, load_settings
from .common import err_console, fail, print_json

__all__ = ["check", "findings_table", "register"]

USAGE = 2
SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "dim"}
VERDICT_STYLE = {Verdict.PASS: "bold green", Verdict.WARN: "bold yellow", Verdict.FAIL: "bold red"}


def findings_table(findings: Sequence[Finding], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", expand=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("code", no_wrap=True)
    # Long URIs and field values must wrap, not be cut off.
    table.add_column("finding", overflow="fold", ratio=3)
    table.add_column("how to fix", overflow="fold", ratio=2)
    for f in findings:
        what = Text(f.title, style="bold" if f.severity is not Severity.INFO else "")
        if f.detail:
            what.append("\n" + f.detail, style="dim" if f.severity is Severity.INFO else "")
        table.add_row(Text(f.severity.value, style=SEVERITY_STYLE[f.severity]), f.code, what, f.fix)
    return table


def verdict_text(verdict: Verdict) -> Text:
    return Text(verdict.label, style=VERDICT_STYLE[verdict])


def _key_lookup(use_dns: bool, specs: Sequence[str], timeout: float) -> KeyLookup | None:
    records: dict[str, str] = {}
    for spec in specs:
        name, eq, path = spec.partition("=")
        if not eq or "._domainkey." not in name or not path:
            fail(f"--dkim-key wants SELECTOR._domainkey.DOMAIN=FILE, got {spec!r}", USAGE)
        try:
            records[name] = key_record_from_bytes(Path(path).read_bytes())
        except OSError as exc:
            fail(f"cannot read key file {path}: {exc.strerror}", USAGE)
        except UnsubkitError as exc:
            fail(f"key file {path}: {exc}", USAGE)
    static = StaticKeys(records) if records else None
    try:
        dns = dns_lookup(timeout) if use_dns else None
    except UnsubkitError as exc:
        fail(f"--dns: {exc}", USAGE)
    if static is None:
        return dns
    if dns is None:
        return static

    def chained(name: str) -> str | None:
        # Keys given on the command line win over DNS (test a key before publishing it).
        return static(name) or dns(name)

    return chained


def _own_tokens(settings: Settings | None) -> OwnTokens | None:
    """unsubkit's own token opener, when this directory has a key ring (``unsubkit init``)."""
    if settings is None or not settings.keys_path.exists():
        return None
    from ..keystore import load_ring
    from ..tokens import TokenCodec

    try:
        codec = TokenCodec(load_ring(settings.keys_path), lifetime=settings.lifetime)
    except UnsubkitError as exc:
        err_console.print(f"[yellow]note:[/] own tokens not checked: {exc}", highlight=False)
        return None
    purpose_name, topic_name = _names(settings)
    bases: list[str] = []
    mailtos: list[str] = []
    for name in settings.brand_names:
        brand = settings.brand(name)
        if brand.base_url and brand.base_url not in bases:
            bases.append(brand.base_url)
        if brand.mailto and brand.mailto not in mailtos:
            mailtos.append(brand.mailto)
    return OwnTokens(codec, tuple(bases), tuple(mailtos), purpose_name, topic_name)


def _names(settings: Settings) -> tuple[Callable[[int], str | None] | None, Callable[[int], str | None] | None]:
    """Purpose and topic names from the store, if it is there (never creates a database)."""
    if settings.is_sqlite:
        path = settings.database_url.split("///", 1)[-1]
        if not path or not Path(path).exists():
            return None, None
    try:
        from ..store import SQLStore

        store = SQLStore(settings.database_url)
        purposes = {p.id: p.name for p in store.purposes()}
        topics = {t.id: t.name for t in store.topics()}
        store.close()
    except UnsubkitError:
        return None, None
    return purposes.get, topics.get


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}", USAGE)


def _messages(files: Sequence[str], mbox: bool) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for path in files:
        data = _read(path)
        label = "<stdin>" if path == "-" else path
        if mbox:
            out.extend((f"{label}[{i}]", raw) for i, raw in enumerate(split_mbox(data), 1))
        else:
            out.append((label, data))
    return out


def _summary(reports: Sequence[Report]) -> dict[str, Any]:
    verdicts = Counter(r.verdict.value for r in reports)
    codes = Counter(code for r in reports for code in dict.fromkeys(r.codes))
    return {
        "messages": len(reports),
        **{v.value: verdicts.get(v.value, 0) for v in Verdict},
        "codes": dict(sorted(codes.items())),
    }


def _print_details(console: Console, reports: Iterable[Report]) -> None:
    for r in reports:
        head = Text(f"{r.source}  ", style="bold")
        head.append_text(verdict_text(r.verdict))
        if r.subject:
            head.append(f"\n{r.subject[:100]}", style="dim")
        console.print(head)
        if r.findings:
            console.print(findings_table(r.findings))
        console.print()


def _print_summary(console: Console, reports: Sequence[Report]) -> None:
    table = Table(title="summary", title_justify="left", expand=True)
    table.add_column("message", overflow="fold")
    table.add_column("subject", overflow="fold")
    table.add_column("verdict")
    table.add_column("errors", justify="right")
    table.add_column("warnings", justify="right")
    table.add_column("codes", overflow="fold")
    for r in reports:
        table.add_row(r.source, r.subject[:60], verdict_text(r.verdict), str(r.count(Severity.ERROR)),
                      str(r.count(Severity.WARNING)),
                      " ".join(c for c in dict.fromkeys(r.codes)))
    console.print(table)
    s = _summary(reports)
    console.print(f"{s['messages']} message(s): [green]{s['pass']} compliant[/], "
                  f"[yellow]{s['warn']} with warnings[/], [red]{s['fail']} not compliant[/]")
    if s["codes"]:
        console.print("most frequent: " + ", ".join(
            f"{code} x{n}" for code, n in Counter(s["codes"]).most_common(8)), highlight=False)


def check(
    files: list[str] = typer.Argument(..., help="Message files (.eml, or an mbox with --mbox); - reads stdin."),
    as_json: bool = typer.Option(False, "--json", help="Print every finding as JSON."),
    mbox: bool = typer.Option(False, "--mbox", help="Each file is an mbox holding many messages."),
    use_dns: bool = typer.Option(False, "--dns", help="Fetch DKIM keys from DNS to verify signatures."),
    dkim_key: list[str] = typer.Option(
        [], "--dkim-key", metavar="SELECTOR._domainkey.DOMAIN=FILE",
        help="A DKIM public key given offline (PEM, private PEM, zone-file TXT or bare record); repeatable.",
    ),
    dns_timeout: float = typer.Option(5.0, "--dns-timeout", min=0.1, help="Seconds per DNS lookup."),
    tokens: bool = typer.Option(True, "--tokens/--no-tokens",
                                help="Open unsubkit's own tokens when a local key ring is configured."),
    summary_only: bool = typer.Option(False, "--summary", help="Only the summary table, no per-message details."),
) -> None:
    """Check messages for one-click unsubscribe compliance (RFC 2369, RFC 8058, DKIM, body link).

    Exit status: 0 when no message has an error-level finding, 1 when one does, 2 on a usage error.
    """
    messages = _messages(files, mbox)
    if not messages:
        fail("no messages found", USAGE)
    settings: Settings | None = None
    if tokens:
        try:
            settings = load_settings()
        except UnsubkitError as exc:
            err_console.print(f"[yellow]note:[/] own tokens not checked: {exc}", highlight=False)
    options = CheckOptions(keys=_key_lookup(use_dns, dkim_key, dns_timeout), tokens=_own_tokens(settings))
    reports: list[Report] = []
    show_progress = mbox or len(messages) > 20
    with Progress(console=err_console, transient=True,
                  disable=not (show_progress and err_console.is_terminal)) as progress:
        task = progress.add_task("checking", total=len(messages))
        for label, raw in messages:
            reports.append(check_message(raw, options, source=label))
            progress.advance(task)
    if as_json:
        print_json({"messages": [r.to_dict() for r in reports], "summary": _summary(reports)})
    else:
        console = Console()
        many = len(reports) > 1
        if not (summary_only or (mbox and many)):
            _print_details(console, reports)
        if many or summary_only:
            _print_summary(console, reports)
    raise typer.Exit(1 if any(r.verdict is Verdict.FAIL for r in reports) else 0)


def register(app: typer.Typer) -> None:
    app.command("check")(check)
