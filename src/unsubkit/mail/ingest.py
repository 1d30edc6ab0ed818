"""The pipe for MTAs (``unsubkit ingest < message``) and mailbox ingest (mbox, Maildir).

Postfix ``pipe(8)``, procmail and ``.forward`` hand over one message on stdin; the exit status
tells the MTA what to do (sysexits): 0 done, 65 unusable data, 67 no such user (bad or
expired token, not our address), 77 sender not proven (From fallback), 75 try again later
(database locked or down). The recipient is ``--recipient`` or, failing that, the message's
``Delivered-To`` / ``X-Original-To``.

A mailbox is processed after the fact, read-only, with the opt-outs committed in batches.
"""

from __future__ import annotations

import mailbox
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from enum import IntEnum
from pathlib import Path

from ..consent.model import ConsentChange
from ..errors import MessageError, StoreError
from .mailto import Replies, Reply, header_block
from .processor import MailtoProcessor, Plan, combine

__all__ = [
    "MAX_PIPE_MESSAGE",
    "Exit",
    "IngestResult",
    "Item",
    "MailboxSummary",
    "envelope_from_headers",
    "ingest_mailbox",
    "ingest_message",
    "iter_maildir",
    "iter_mbox",
    "recipients_from_headers",
]

#: The pipe reads at most this much; the MTA's own size limit normally applies long before.
MAX_PIPE_MESSAGE = 32 * 1024 * 1024


class Exit(IntEnum):
    """sysexits.h values, as Postfix pipe(8) and procmail read them."""

    OK = 0
    DATAERR = 65
    NOUSER = 67
    TEMPFAIL = 75
    NOPERM = 77


@dataclass(frozen=True, slots=True)
class IngestResult:
    status: str  # recorded | dropped | refused | retry | invalid
    exit: Exit
    detail: str
    events: int = 0
    changed: int = 0


def recipients_from_headers(data: bytes) -> list[str]:
    """The final recipient as the delivering MTA recorded it: the topmost ``Delivered-To``
    (Postfix adds one per local delivery), else ``X-Original-To``."""
    try:
        msg = BytesHeaderParser(policy=compat32).parsebytes(header_block(data))
        for name in ("Delivered-To", "X-Original-To"):
            values = msg.get_all(name) or []
            if values:
                found = [a for _, a in getaddresses([str(values[0])]) if "@" in a]
                if found:
                    return found[:1]
    except Exception:  # noqa: BLE001 - hostile header blocks carry no recipient
        return []
    return []


def envelope_from_headers(data: bytes) -> str | None:
    """The envelope sender recorded in ``Return-Path`` (``""`` for the null path), or ``None``."""
    try:
        msg = BytesHeaderParser(policy=compat32).parsebytes(header_block(data))
        value = msg.get("Return-Path")
    except Exception:  # noqa: BLE001 - hostile header blocks
        return None
    if value is None:
        return None
    text = str(value).strip()
    return "" if text in ("<>", "") else text.strip("<>")


def _exit_for(reply: Reply) -> Exit:
    if reply.ok:
        return Exit.OK
    if reply.temporary:
        return Exit.TEMPFAIL
    if reply == Replies.SENDER_NOT_VERIFIED:
        return Exit.NOPERM
    return Exit.NOUSER


def evaluate(
    processor: MailtoProcessor,
    data: bytes,
    *,
    recipients: Sequence[str] = (),
    sender: str | None = None,
) -> Plan | IngestResult:
    """The plan for one message, or why there is none (no recipient, unusable input)."""
    if not data.strip():
        return IngestResult("invalid", Exit.DATAERR, "empty message")
    if len(data) > MAX_PIPE_MESSAGE:
        return IngestResult("invalid", Exit.DATAERR, "message too large")
    rcpts = list(recipients) or recipients_from_headers(data)
    if not rcpts:
        return IngestResult("invalid", Exit.DATAERR,
                            "no recipient: pass --recipient or deliver with a Delivered-To header")
    if sender is None:
        sender = envelope_from_headers(data)
    bounce = sender is not None and sender.strip() in ("", "<>")
    checked = [processor.check_recipient(r, bounce=bounce) for r in rcpts]
    return processor.plan(sender, data, checked)


def _result(plan: Plan, events: int = 0, changed: int = 0) -> IngestResult:
    if plan.dropped is not None:
        return IngestResult("dropped", Exit.OK, f"dropped: {plan.dropped}")
    reply = combine(plan.outcomes)
    code = _exit_for(reply)
    status = {Exit.OK: "recorded", Exit.TEMPFAIL: "retry"}.get(code, "refused")
    return IngestResult(status, code, reply.text, events, changed)


def ingest_message(
    processor: MailtoProcessor,
    data: bytes,
    *,
    recipients: Sequence[str] = (),
    sender: str | None = None,
) -> IngestResult:
    """Process one message and record its opt-outs (committed before this returns)."""
    planned = evaluate(processor, data, recipients=recipients, sender=sender)
    if isinstance(planned, IngestResult):
        return planned
    if not planned.changes:
        return _result(planned)
    try:
        events = processor.kit.record(planned.changes)
    except StoreError as exc:
        return IngestResult("retry", Exit.TEMPFAIL, f"cannot record now: {exc}")
    return _result(planned, len(events), sum(e.changed for e in events))


# -- mailboxes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    """One message of a mailbox (its envelope sender, if any, is in Return-Path)."""

    key: str
    data: bytes


def _open_mbox(path: Path) -> mailbox.mbox:
    if not path.is_file():
        raise MessageError(f"no mbox file at {path}")
    return mailbox.mbox(str(path), create=False)


def iter_mbox(path: Path) -> tuple[int, Iterator[Item]]:
    box = _open_mbox(path)
    keys = list(box.iterkeys())

    def items() -> Iterator[Item]:
        # The From_ line is not trusted for the envelope sender: tools that lack one write
        # "From MAILER-DAEMON"; Return-Path (read in evaluate) is what delivery recorded.
        for key in keys:
            yield Item(str(key), box.get_bytes(key))

    return len(keys), items()


def iter_maildir(path: Path) -> tuple[int, Iterator[Item]]:
    if not (path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir()):
        raise MessageError(f"no Maildir at {path} (needs cur/ and new/)")
    box = mailbox.Maildir(str(path), factory=None, create=False)
    keys = sorted(box.iterkeys())

    def items() -> Iterator[Item]:
        for key in keys:
            try:
                data = box.get_bytes(key)
            except (KeyError, FileNotFoundError):  # moved by a concurrent MUA
                continue
            yield Item(key, data)

    return len(keys), items()


@dataclass
class MailboxSummary:
    messages: int = 0
    recorded: int = 0
    events: int = 0
    changed: int = 0
    dropped: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    retry: int = 0
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "messages": self.messages, "recorded": self.recorded, "events": self.events,
            "changed": self.changed, "dropped": self.dropped, "refused": dict(self.refused),
            "invalid": dict(self.invalid), "retry": self.retry, "error": self.error,
        }


def ingest_mailbox(
    processor: MailtoProcessor,
    items: Iterator[Item],
    *,
    recipients: Sequence[str] = (),
    batch: int = 256,
    progress: Callable[[], None] | None = None,
) -> MailboxSummary:
    """Process every message; opt-outs are committed ``batch`` messages at a time. A store
    failure stops the run (``summary.error``): what was committed stays, the rest can be
    ingested again (a repeated opt-out changes nothing)."""
    summary = MailboxSummary()
    pending: list[tuple[Plan, list[ConsentChange]]] = []

    def flush() -> None:
        if not pending:
            return
        flat = [ch for _, chs in pending for ch in chs]
        events = processor.kit.record(flat)
        summary.recorded += len(pending)
        summary.events += len(events)
        summary.changed += sum(e.changed for e in events)
        pending.clear()

    try:
        for item in items:
            summary.messages += 1
            planned = evaluate(processor, item.data, recipients=recipients)
            if isinstance(planned, IngestResult):
                summary.invalid[planned.detail] += 1
            elif planned.dropped is not None:
                summary.dropped += 1
            elif planned.changes:
                pending.append((planned, planned.changes))
                if len(pending) >= batch:
                    flush()
            else:
                result = _result(planned)
                if result.exit is Exit.TEMPFAIL:
                    summary.retry += 1
                else:
                    summary.refused[result.detail] += 1
            if progress is not None:
                progress()
        flush()
    except StoreError as exc:
        summary.error = f"stopped: cannot record: {exc}"
    return summary
