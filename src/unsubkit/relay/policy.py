"""Relay decisions (pure): control fields, replies, and one DATA reply for many copies.

The app names a message's purpose, topic and brand in ``X-Unsubkit-*`` fields; they arrive
with DATA, after every RCPT was answered. So consent is decided at DATA time, and since plain
SMTP has a single DATA reply for the whole transaction, :func:`verdict` folds the per-recipient
outcomes into one reply:

==============================================  ==========================================
outcome of the transaction                      reply to the app
==============================================  ==========================================
every recipient opted out                       ``550 5.7.1`` (nothing was sent)
every allowed copy forwarded (some suppressed)  ``250`` (suppressions are logged and counted)
any copy failed temporarily                     ``451``; copies already forwarded are
                                                remembered, the app's retry sends the rest
no copy forwarded, failures all permanent       the upstream's ``5xx`` and reason
some forwarded, the rest failed permanently     ``250`` and a bounce (DSN) to the sender
==============================================  ==========================================

Why ``250`` and not ``550`` when only some recipients opted out: a ``5xx`` to DATA tells the app
that *no* recipient got the message, while the allowed ones did; the app would retry or
report a failure that did not happen. A suppression is the policy working, not an error. When
*all* recipients opted out, nothing went anywhere and ``550`` says exactly that (for the usual
one-recipient transaction it is the per-recipient answer the app can act on).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import MessageError

__all__ = [
    "BRAND_FIELD",
    "CONTROL_PREFIX",
    "PURPOSE_FIELD",
    "TOPIC_FIELD",
    "Control",
    "Delivery",
    "Replies",
    "Reply",
    "Submitted",
    "Verdict",
    "clean_text",
    "settle",
    "split_control",
    "verdict",
]

CONTROL_PREFIX = "x-unsubkit-"
PURPOSE_FIELD = "X-Unsubkit-Purpose"
TOPIC_FIELD = "X-Unsubkit-Topic"
BRAND_FIELD = "X-Unsubkit-Brand"

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\s*")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")
_MAX_TEXT = 300


# -- control fields --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Control:
    """What the app asked for in the ``X-Unsubkit-*`` fields (``None``: not given)."""

    purpose: str | None = None
    topic: str | None = None
    brand: str | None = None


def _one(values: list[str], name: str) -> str | None:
    distinct = {" ".join(v.split()) for v in values}
    distinct.discard("")
    if len(distinct) > 1:
        raise MessageError(f"{name} is given {len(distinct)} different values")
    return distinct.pop() if distinct else None


@dataclass(frozen=True, slots=True)
class Submitted:
    """A submitted message split at the byte level: the control fields read and removed,
    everything else byte for byte as the app sent it (no parse, no re-serialization)."""

    control: Control
    data: bytes
    #: Unfolded values of the remaining header fields, by lower-cased name.
    fields: dict[str, list[str]]
    stripped: int


def split_control(data: bytes) -> Submitted:
    """Read and remove the ``X-Unsubkit-*`` fields of raw message ``data``.

    Raises :class:`MessageError` for conflicting control values or a message without header.
    """
    nl = b"\r\n" if b"\r\n" in data[:2048] else b"\n"
    end = data.find(nl + nl)
    head, body = (data, b"") if end < 0 else (data[: end + len(nl)], data[end + len(nl):])
    lines = head.split(nl)
    if lines and lines[-1] == b"":
        lines.pop()
    raw_fields: list[list[bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and raw_fields:
            raw_fields[-1].append(line)  # a folded continuation of the previous field
        else:
            raw_fields.append([line])
    if not raw_fields or b":" not in raw_fields[0][0]:
        raise MessageError("the message has no header fields")
    kept: list[bytes] = []
    control: dict[str, list[str]] = {}
    fields: dict[str, list[str]] = {}
    stripped = 0
    for parts in raw_fields:
        name_b, _, first = parts[0].partition(b":")
        name = name_b.strip().decode("ascii", "replace").lower()
        value = b" ".join([first, *parts[1:]]).decode("utf-8", "replace").strip()
        if name.startswith(CONTROL_PREFIX):
            control.setdefault(name, []).append(value)
            stripped += 1
            continue
        fields.setdefault(name, []).append(value)
        kept.extend(line + nl for line in parts)
    ctl = Control(*(_one(control.get(n.lower(), []), n) for n in (PURPOSE_FIELD, TOPIC_FIELD, BRAND_FIELD)))
    if not stripped:
        return Submitted(ctl, data, fields, 0)
    return Submitted(ctl, b"".join(kept) + body, fields, stripped)


# -- replies ---------------------------------------------------------------------------------


def clean_text(text: str) -> str:
    """One printable line, short enough for a reply (an upstream's text may be anything)."""
    line = _UNPRINTABLE.sub(" ", text).strip()
    return line[:_MAX_TEXT]


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    status: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.status} {clean_text(self.text)}"

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500


class Replies:
    """Every reply the relay gives of its own. No addresses, no tokens."""

    OK = Reply(250, "2.1.0", "OK")
    RECIPIENT_OK = Reply(250, "2.1.5", "OK")
    CLIENT_DENIED = Reply(550, "5.7.1", "client not allowed to relay")
    BAD_RECIPIENT = Reply(553, "5.1.3", "invalid recipient address")
    BAD_SENDER = Reply(553, "5.1.7", "invalid sender address")
    TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "too many recipients")
    UNSUBSCRIBED = Reply(550, "5.7.1", "recipient has unsubscribed")
    TRY_LATER = Reply(451, "4.3.0", "temporary failure, try again later")


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the upstream said to one copy (``code`` 2xx: accepted)."""

    recipient: str
    code: int
    text: str
    temporary: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def status(self) -> str:
        """The enhanced status code (RFC 3463): the upstream's own, else a generic one."""
        m = _ENHANCED.match(self.text)
        if m and m.group(1) == str(self.code)[0]:
            return ".".join(m.groups())
        if self.ok:
            return "2.0.0"
        return "4.4.0" if self.temporary else "5.0.0"

    @property
    def reason(self) -> str:
        """The upstream's text without its enhanced status code."""
        return clean_text(_ENHANCED.sub("", self.text, count=1)) or "no reason given"


def _upstream_failure(d: Delivery, *, note: str) -> Reply:
    if d.temporary:
        return Reply(451, d.status if d.status.startswith("4") else "4.4.0",
                     f"upstream deferred: {d.reason}{note}")
    # 550-554 pass through; protocol errors (500-504) are the relay's problem, reported as 554.
    code = d.code if 550 <= d.code <= 554 else 554
    return Reply(code, d.status, f"upstream refused: {d.reason}{note}")


# -- one reply for the transaction -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """The DATA reply, which forwarded copies to remember (when deferring) and which
    permanent failures to report to the sender by a bounce (when accepting)."""

    reply: Reply
    remember: tuple[str, ...] = ()
    bounce: tuple[Delivery, ...] = ()


def verdict(deliveries: Sequence[Delivery], *, suppressed: int, already_sent: int = 0) -> Verdict:
    """Fold the outcomes of one transaction into one reply (table in the module docstring).

    ``already_sent`` counts copies an earlier, deferred attempt at the same message forwarded.
    """
    sent = [d for d in deliveries if d.ok]
    temp = [d for d in deliveries if not d.ok and d.temporary]
    perm = [d for d in deliveries if not d.ok and not d.temporary]
    if not deliveries and not already_sent:
        if suppressed == 1:
            return Verdict(Replies.UNSUBSCRIBED)
        return Verdict(Reply(550, "5.7.1", f"all {suppressed} recipients have unsubscribed"))
    done = len(sent) + already_sent
    if temp:
        note = f" ({done} of {done + len(temp) + len(perm)} copies sent; retry sends the rest)" if done else ""
        return Verdict(_upstream_failure(temp[0], note=note), remember=tuple(d.recipient for d in sent))
    if perm and not done:
        return Verdict(_upstream_failure(perm[0], note=""))
    parts = [f"forwarded {done}"]
    if perm:
        parts.append(f"{len(perm)} refused upstream (bounce follows)")
    if suppressed:
        parts.append(f"{suppressed} suppressed (unsubscribed)")
    return Verdict(Reply(250, "2.0.0", ", ".join(parts)), bounce=tuple(perm))


def settle(v: Verdict, bounce: Delivery | None, *, forwarded: Sequence[str]) -> Verdict:
    """The reply once the bounce for ``v.bounce`` was tried (``None``: none was needed).

    A bounce that could not go out *for now* turns the reply into ``451``: the permanent
    failures would otherwise be reported to nobody. The forwarded copies are remembered, so the
    retry only re-tries the failed ones (and the bounce).
    """
    if bounce is None or bounce.ok or not bounce.temporary:
        return v
    return Verdict(_upstream_failure(bounce, note=" (while sending a bounce)"), remember=tuple(forwarded))
