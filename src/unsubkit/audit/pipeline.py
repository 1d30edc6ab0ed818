"""Run every rule over one message and collect a :class:`~unsubkit.audit.model.Report`.

Pure: bytes in, frozen report out. A rule that fails on some input does not stop the others;
its failure becomes finding LU999 (tests assert it never appears).
"""

from __future__ import annotations

from collections.abc import Iterator

from .context import CheckContext, CheckOptions
from .message import parse_message
from .model import Finding, Report, RuleInfo, Severity
from .rules import RULES

__all__ = ["PIPELINE_CODES", "check_message", "split_mbox"]

NOT_A_MESSAGE = RuleInfo(
    "LU900", Severity.ERROR, "not an email message",
    "Give the checker a complete message (.eml, RFC 5322), header section first.",
)
DEFECTS = RuleInfo(
    "LU901", Severity.INFO, "the message is malformed in places",
    "Fix the generator of the message; the checker read around these defects.",
)
INTERNAL = RuleInfo(
    "LU999", Severity.WARNING, "a check could not run on this message",
    "Report this message to the unsubkit maintainers (it can be anonymized first).",
)
PIPELINE_CODES = (NOT_A_MESSAGE, DEFECTS, INTERNAL)


def _run(ctx: CheckContext) -> Iterator[Finding]:
    for rule in RULES:
        try:
            yield from rule.check(ctx)
        except Exception as exc:  # noqa: BLE001 - one faulty rule must not hide the others' findings
            yield INTERNAL.finding(f"rule {rule.name}: {type(exc).__name__}: {str(exc)[:120]}")


def check_message(raw: bytes, options: CheckOptions | None = None, *, source: str = "") -> Report:
    """Check one raw message. Never raises on any input bytes."""
    msg = parse_message(raw)
    if not msg.fields:
        return Report((NOT_A_MESSAGE.finding("no header fields found"),), source=source)
    ctx = CheckContext(msg, options)
    findings = list(_run(ctx))
    if msg.defects:
        findings.append(DEFECTS.finding("; ".join(msg.defects[:3])))
    findings.sort(key=lambda f: (f.severity.rank, f.code))
    return Report(
        findings=tuple(findings),
        subject=msg.subject,
        from_=msg.from_value,
        message_id=msg.message_id,
        source=source,
    )


def split_mbox(data: bytes) -> Iterator[bytes]:
    """Split an mbox (mboxo/mboxrd) into raw messages, undoing ``>From`` quoting."""
    current: list[bytes] = []
    started = False
    for line in data.splitlines(keepends=True):
        if line.startswith(b"From ") and (not started or not current or current[-1].strip() == b""):
            if started and current:
                yield _unquote(current)
            current = []
            started = True
            continue
        if not started:
            if line.strip() == b"":
                continue
            started = True  # not an mbox after all: treat the whole input as one message
        current.append(line)
    if current:
        yield _unquote(current)


def _unquote(lines: list[bytes]) -> bytes:
    # The blank line before the next "From " separator belongs to the mbox, not the message.
    if lines and lines[-1].strip() == b"":
        lines = lines[:-1]
    out = []
    for line in lines:
        stripped = line.lstrip(b">")
        if stripped.startswith(b"From ") and stripped is not line:
            line = line[1:]
        out.append(line)
    return b"".join(out)
