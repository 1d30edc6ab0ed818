"""Recipient and message outcomes, shared by the SMTP/LMTP listener and the pipe.

:meth:`MailtoProcessor.check_recipient` answers RCPT; :meth:`MailtoProcessor.plan` turns a
received message into one :class:`Outcome` per recipient (the reply and the consent changes to
record). Recording is the caller's job, so the listener can group-commit and the pipe can
write directly; either way the ``250`` (or exit 0) comes only after the commit.

``plan`` may verify DKIM (the From fallback), which can wait on DNS: callers on an event loop
run it in a thread when :func:`needs_io` says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..consent.model import ConsentChange, Mechanism
from ..errors import ExpiredToken, SenderNotVerified, TokenError
from ..service import Unsubkit
from ..tokens import Claims
from .fromcheck import FromChecker
from .mailto import (
    Directory,
    MessageFacts,
    Replies,
    Reply,
    Target,
    drop_reason,
    fallback_changes,
    read_facts,
    request_meta,
)

__all__ = ["Accepted", "MailtoProcessor", "Outcome", "Plan", "combine", "needs_io"]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A recipient accepted at RCPT: our mailbox, and the opened token when it has one."""

    target: Target
    claims: Claims | None


@dataclass(frozen=True, slots=True)
class Outcome:
    reply: Reply
    changes: Sequence[ConsentChange] = ()
    #: For the log line (never a token or a full address).
    note: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    facts: MessageFacts
    outcomes: list[Outcome]
    dropped: str | None = None
    changes: list[ConsentChange] = field(default_factory=list)

    def failed_write(self) -> Plan:
        """The same plan after the store refused the changes: retry later, all of them."""
        outcomes = [Outcome(Replies.TRY_LATER, (), "store unavailable") if o.changes else o
                    for o in self.outcomes]
        return Plan(self.facts, outcomes, self.dropped, [])


def needs_io(checked: Sequence[Accepted | Reply]) -> bool:
    """Whether :meth:`MailtoProcessor.plan` may block (a bare address needs DKIM and DNS)."""
    return any(isinstance(c, Accepted) and c.claims is None and c.target.from_fallback
               for c in checked)


def combine(outcomes: Sequence[Outcome]) -> Reply:
    """The one SMTP reply for a transaction: retry when anything was temporary (a repeated
    opt-out is harmless), success when anything succeeded, else the first refusal."""
    if any(o.reply.temporary for o in outcomes):
        return Replies.TRY_LATER
    ok = [o.reply for o in outcomes if o.reply.ok]
    if ok:
        return Replies.UNSUBSCRIBED if Replies.UNSUBSCRIBED in ok else ok[0]
    return outcomes[0].reply if outcomes else Replies.NO_SUCH_USER


class MailtoProcessor:
    def __init__(
        self,
        kit: Unsubkit,
        *,
        directory: Directory | None = None,
        from_checker: FromChecker | None = None,
    ) -> None:
        self.kit = kit
        self.directory = directory or Directory.from_settings(kit.settings)
        self.from_checker = from_checker

    def check_recipient(self, address: str, *, bounce: bool = False) -> Accepted | Reply:
        """RCPT: accept our mailboxes whose token opens (or bare ones with the From fallback).

        A bounce (null reverse-path) to any address in our domains is accepted, to be dropped
        at DATA: refusing it would only make the remote MTA log a double bounce.
        """
        target = self.directory.lookup(address)
        if isinstance(target, Reply):
            if bounce and target != Replies.RELAY_DENIED:
                return Accepted(Target("", None), None)
            return target
        if bounce:
            return Accepted(Target(target.brand, None), None)
        if target.token is None:
            return Accepted(target, None)
        try:
            return Accepted(target, self.kit.open_token(target.token))
        except ExpiredToken:
            return Replies.TOKEN_EXPIRED
        except TokenError:
            return Replies.TOKEN_INVALID

    def plan(
        self,
        mail_from: str | None,
        data: bytes,
        checked: Sequence[Accepted | Reply],
        *,
        client_ip: str | None = None,
    ) -> Plan:
        facts = read_facts(data)
        dropped = drop_reason(mail_from, facts)
        if dropped is not None:
            # Every recipient was accepted at RCPT; none of them is told anything else now.
            return Plan(facts, [Outcome(Replies.DROPPED, (), "dropped") for _ in checked], dropped)
        meta = request_meta(client_ip, facts)
        sender: str | SenderNotVerified | None = None
        outcomes: list[Outcome] = []
        for c in checked:
            if isinstance(c, Reply):
                outcomes.append(Outcome(c, (), "refused"))
            elif c.claims is not None:
                changes = self.kit.changes_for_token(c.claims, mechanism=Mechanism.MAILTO, meta=meta)
                outcomes.append(Outcome(Replies.UNSUBSCRIBED, changes, f"token brand={c.target.brand}"))
            else:
                if sender is None:
                    sender = self._verify_sender(data)
                if isinstance(sender, SenderNotVerified):
                    reply = Replies.TRY_LATER if sender.temporary else Replies.SENDER_NOT_VERIFIED
                    outcomes.append(Outcome(reply, (), f"from fallback refused: {sender}"))
                else:
                    changes = fallback_changes(sender, c.target.brand, meta)
                    outcomes.append(Outcome(Replies.UNSUBSCRIBED, changes,
                                            f"from fallback brand={c.target.brand}"))
        return Plan(facts, outcomes, None, [ch for o in outcomes for ch in o.changes])

    def _verify_sender(self, data: bytes) -> str | SenderNotVerified:
        if self.from_checker is None:
            return SenderNotVerified("the From fallback has no DKIM verifier configured")
        try:
            return self.from_checker.verify(data)
        except SenderNotVerified as exc:
            return exc
