"""The aiosmtpd handler for the unsubscribe addresses (SMTP and LMTP).

A plain object with ``handle_*`` hooks returning reply strings (aiosmtpd's style): RCPT
accepts only our mailboxes with a token that opens; DATA records the opt-out through
``submit`` (which resolves only after the commit) and answers ``250`` afterwards. In LMTP
mode DATA answers once per accepted recipient, in RCPT order (RFC 2033 section 4.2).

Logs carry the brand, the outcome and event ids: never a token, never an address.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..consent.model import ConsentChange
from ..errors import StoreError
from .mailto import Replies, Reply, is_null_sender
from .processor import Accepted, MailtoProcessor, Plan, combine, needs_io

if TYPE_CHECKING:  # the web package is not needed to run the handler (``unsubkit ingest``)
    from ..web.writer import Recorded

__all__ = ["MailtoHandler", "Submit"]

log = logging.getLogger("unsubkit.mail")

_CHECKED = "unsubkit_checked"

#: Records changes durably; returns only after the commit.
Submit = Callable[[Sequence[ConsentChange]], Awaitable["Sequence[Recorded]"]]


def _peer_ip(session: Any) -> str | None:
    peer = getattr(session, "peer", None)
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return None


class MailtoHandler:
    def __init__(
        self,
        processor: MailtoProcessor,
        submit: Submit,
        *,
        lmtp: bool = False,
        max_recipients: int = 50,
    ) -> None:
        self.processor = processor
        self.submit = submit
        self.lmtp = lmtp
        self.max_recipients = max_recipients
        self.recorded = 0
        self.dropped = 0

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        # aiosmtpd reads commands strictly in order and answers each in turn, which is all
        # RFC 2920 asks; advertising it lets Postfix and aiosmtplib batch MAIL/RCPT/DATA.
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return str(Replies.TOO_MANY_RECIPIENTS)
        checked = self.processor.check_recipient(address, bounce=is_null_sender(envelope.mail_from))
        if isinstance(checked, Reply):
            domain = address.rpartition("@")[2][:100]
            log.info("mailto: refused recipient at %r: %s", domain, checked.text)
            return str(checked)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        # Kept with the transaction (aiosmtpd makes a new Envelope for each), so DATA does not
        # open every token again.
        checked_so_far: list[Accepted | Reply] = getattr(envelope, _CHECKED, [])
        checked_so_far.append(checked)
        setattr(envelope, _CHECKED, checked_so_far)
        return str(Replies.RECIPIENT_OK)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or b""
        if isinstance(data, str):  # only when decode_data is on; we never set it
            data = data.encode("utf-8", "surrogateescape")
        checked: list[Accepted | Reply] = getattr(envelope, _CHECKED, [])
        if len(checked) != len(envelope.rcpt_tos):  # recipients added some other way
            bounce = is_null_sender(envelope.mail_from)
            checked = [self.processor.check_recipient(a, bounce=bounce) for a in envelope.rcpt_tos]
        ip = _peer_ip(session)
        if needs_io(checked):
            plan = await asyncio.to_thread(self.processor.plan, envelope.mail_from, data, checked,
                                           client_ip=ip)
        else:
            plan = self.processor.plan(envelope.mail_from, data, checked, client_ip=ip)
        plan = await self._record(plan)
        if self.lmtp:
            return "\r\n".join(str(o.reply) for o in plan.outcomes)
        return str(combine(plan.outcomes))

    async def _record(self, plan: Plan) -> Plan:
        if plan.dropped is not None:
            self.dropped += 1
            log.info("mailto: dropped message to %d recipient(s): %s", len(plan.outcomes),
                     plan.dropped)
            return plan
        for o in plan.outcomes:
            if not o.changes and not o.reply.ok:
                log.info("mailto: not recorded: %s (%s)", o.reply.text, o.note)
        if not plan.changes:
            return plan
        try:
            events = await self.submit(plan.changes)
        except StoreError as exc:
            log.warning("mailto: could not record %d change(s), asking to retry: %s",
                        len(plan.changes), exc)
            return plan.failed_write()
        self.recorded += 1
        log.info("mailto: opt-out recorded (%s) apple=%s events=%s changed=%s",
                 "; ".join(o.note for o in plan.outcomes if o.changes), plan.facts.apple,
                 ",".join(str(e.id) for e in events), any(e.changed for e in events))
        return plan

    async def handle_exception(self, error: Exception) -> str:
        # Hostile input must never crash the session or leak internals into a reply.
        log.error("mailto: unexpected %s in SMTP session", type(error).__name__,
                  exc_info=(type(error), error, error.__traceback__))
        return str(Replies.TRY_LATER)
