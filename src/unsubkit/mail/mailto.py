"""Mailto unsubscribe decisions (pure: bytes and strings in, frozen values out).

Which recipient addresses are ours (``unsubscribe+TOKEN@example.com``, the bare
``unsubscribe@example.com``), what to answer for the others, and what a received message is:
a bounce or delivery report (dropped), Apple Mail's one-click form (processed), or plain mail.

Nothing here ever composes mail: the listener and the pipe only accept or refuse, so an
unsubscribe address can never take part in a mail loop (DESIGN.md trap 10).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from ..consent.model import (
    Action,
    ConsentChange,
    Mechanism,
    Reason,
    RequestMeta,
    Scope,
    Source,
)
from ..settings import Settings

__all__ = [
    "Directory",
    "Mailbox",
    "MessageFacts",
    "Replies",
    "Reply",
    "Target",
    "drop_reason",
    "fallback_changes",
    "header_block",
    "is_null_sender",
    "read_facts",
    "request_meta",
]

#: Header block parsed for facts; anything beyond is body (and the token is in the envelope).
MAX_HEADER_BYTES = 128 * 1024
_AGENT_MAX = 200
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP/LMTP reply line."""

    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}"

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500


class Replies:
    """Every reply the listener gives of its own. Short, and free of tokens and addresses."""

    RECIPIENT_OK = Reply(250, "OK")
    UNSUBSCRIBED = Reply(250, "unsubscribe recorded")
    #: Bounces and reports: accepted so nobody retries them, then dropped.
    DROPPED = Reply(250, "accepted")
    RELAY_DENIED = Reply(550, "relay denied")
    NO_SUCH_USER = Reply(550, "no such user")
    NEEDS_TOKEN = Reply(550, "this unsubscribe address needs the token from the message")
    TOKEN_INVALID = Reply(550, "unsubscribe address is not valid")
    TOKEN_EXPIRED = Reply(550, "unsubscribe address has expired")
    SENDER_NOT_VERIFIED = Reply(550, "sender not proven by a DKIM signature aligned with From")
    TOO_MANY_RECIPIENTS = Reply(452, "too many recipients")
    TRY_LATER = Reply(451, "temporary failure, try again later")


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One unsubscribe address we answer for: ``local@domain`` of a brand."""

    brand: str
    local: str
    domain: str
    from_fallback: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """A recipient that is one of our mailboxes, with the token it carries (if any)."""

    brand: str
    token: str | None
    from_fallback: bool = False


class Directory:
    """Our unsubscribe mailboxes and domains, built once from the settings.

    Our domains are every brand's mailto domain and its ``domains``; a brand's mailto local
    part is valid at each of them. The local part is compared without case, the token after
    ``+`` keeps its case (tokens are base64url, and ``+`` never occurs in one).
    """

    def __init__(self, mailboxes: Iterable[Mailbox], domains: Iterable[str] = ()) -> None:
        self._boxes: dict[str, list[Mailbox]] = {}
        for box in mailboxes:
            box = Mailbox(box.brand, box.local.lower(), _domain(box.domain), box.from_fallback)
            entries = self._boxes.setdefault(box.domain, [])
            if all(e.local != box.local for e in entries):  # first brand to claim it wins
                entries.append(box)
        for entries in self._boxes.values():
            # The longest local part first: ``unsub+news`` before ``unsub``.
            entries.sort(key=lambda b: -len(b.local))
        self.domains = frozenset(_domain(d) for d in domains) | frozenset(self._boxes)

    @classmethod
    def from_settings(cls, settings: Settings) -> Directory:
        boxes: list[Mailbox] = []
        domains: list[str] = []
        for name in settings.brand_names:
            brand = settings.brand(name)
            domains.extend(brand.domains)
            if not brand.mailto:
                continue
            local, _, domain = brand.mailto.rpartition("@")
            for d in (domain, *brand.domains):
                boxes.append(Mailbox(name, local, d, brand.mailto_from_fallback))
        return cls(boxes, domains)

    @property
    def mailboxes(self) -> list[Mailbox]:
        return [b for entries in self._boxes.values() for b in entries]

    def lookup(self, address: str) -> Target | Reply:
        """Our mailbox for an envelope recipient, or the refusal to give at RCPT."""
        local, at, domain = address.rpartition("@")
        if not at or not local:
            return Replies.NO_SUCH_USER
        domain = _domain(domain)
        if domain not in self.domains:
            return Replies.RELAY_DENIED
        lowered = local.lower()
        for box in self._boxes.get(domain, ()):
            if lowered == box.local:
                if not box.from_fallback:
                    return Replies.NEEDS_TOKEN
                return Target(box.brand, None, True)
            prefix = len(box.local) + 1
            if lowered[:prefix] == box.local + "+":
                token = local[prefix:]
                if not token:
                    return Replies.TOKEN_INVALID
                return Target(box.brand, token, box.from_fallback)
        return Replies.NO_SUCH_USER


def _domain(domain: str) -> str:
    return domain.strip().strip("[]").lower().rstrip(".")


# -- messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the header block of a received message says (everything optional)."""

    content_type: str = "text/plain"
    report_type: str | None = None
    auto_submitted: str | None = None
    #: Apple Mail's unsubscribe form (``X-Apple-Unsubscribe: true``).
    apple: bool = False
    subject: str = ""
    message_id: str | None = None
    agent: str | None = None
    from_count: int = 0
    parse_error: bool = False


def header_block(data: bytes) -> bytes:
    """The header block of a raw message (at most :data:`MAX_HEADER_BYTES`), blank line kept."""
    head = data[:MAX_HEADER_BYTES]
    ends = [i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0]
    return head[: min(ends)] + b"\n\n" if ends else head


def _text(msg: Message, name: str) -> str | None:
    value = msg.get(name)
    if value is None:
        return None
    return " ".join(str(value).split())


def _clean(value: str | None) -> str | None:
    if not value:
        return None
    return _UNPRINTABLE.sub(" ", value).strip()[:_AGENT_MAX] or None


def read_facts(data: bytes) -> MessageFacts:
    """Facts from the header block. Garbage in gives defaults, never an exception: the token in
    the envelope is all an unsubscribe needs."""
    try:
        msg = BytesHeaderParser(policy=compat32).parsebytes(header_block(data))
        ctype = msg.get_content_type()
        report = msg.get_param("report-type") if ctype == "multipart/report" else None
        apple = (_text(msg, "X-Apple-Unsubscribe") or "").lower() == "true"
        return MessageFacts(
            content_type=ctype,
            report_type=str(report).lower() if isinstance(report, str) else None,
            auto_submitted=_clean(_text(msg, "Auto-Submitted")),
            apple=apple,
            subject=_clean(_text(msg, "Subject")) or "",
            message_id=_clean(_text(msg, "Message-ID")),
            agent=_clean(_text(msg, "User-Agent") or _text(msg, "X-Mailer")),
            from_count=len(msg.get_all("From") or []),
        )
    except Exception:  # noqa: BLE001 - any parser failure on hostile input means "no facts"
        return MessageFacts(parse_error=True)


def is_null_sender(mail_from: str | None) -> bool:
    """The null reverse-path (``MAIL FROM:<>``; Postfix pipe passes an empty ``${sender}``).
    ``None`` means the sender is unknown (a message read from a mailbox), not null."""
    return mail_from is not None and mail_from.strip() in ("", "<>")


def drop_reason(mail_from: str | None, facts: MessageFacts) -> str | None:
    """Why a message is a bounce or report that must be accepted and dropped, or ``None``.

    ``Auto-Submitted`` alone is *not* a reason: Apple Mail marks its unsubscribe form
    ``auto-replied``, and that form must be processed.
    """
    if is_null_sender(mail_from):
        return "null reverse-path"
    if facts.content_type == "multipart/report":
        return f"multipart/report ({facts.report_type or 'unknown type'})"
    return None


def request_meta(client_ip: str | None, facts: MessageFacts) -> RequestMeta:
    """The evidence kept with the event: where it came from and which client sent it."""
    agent = "Apple Mail (X-Apple-Unsubscribe)" if facts.apple else facts.agent
    return RequestMeta(client_ip=client_ip, user_agent=f"mailto; {agent}" if agent else "mailto")


def fallback_changes(address: str, brand: str, meta: RequestMeta) -> list[ConsentChange]:
    """A bare-address unsubscribe names no message, purpose or topic: it stops all bulk email
    to the (DKIM-proven) sender address."""
    return [
        ConsentChange(
            address=address,
            scope=Scope.bulk_email(),
            action=Action.OPT_OUT,
            source=Source.MAILTO,
            reason=Reason.MAILTO,
            mechanism=Mechanism.MAILTO,
            brand=brand,
            meta=meta,
        )
    ]
