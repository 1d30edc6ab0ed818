"""The aiosmtpd handler of the outbound relay: a plain object returning reply strings.

MAIL checks the client's network; RCPT checks address syntax and the recipient limit (the
purpose is not known yet: it comes with the message); DATA plans the copies in a worker
thread (consent, preparation, DKIM), forwards them in parallel, and answers once for the
whole transaction (see :mod:`unsubkit.relay.policy` for the table and why). The reply is given
only after every copy's fate is known, so a ``250`` always means delivered upstream or
reported back by a bounce.

Logs carry masked addresses, purpose, brand and counts: never a token.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..address import mask, normalize
from ..clock import Clock, system_clock
from ..errors import (
    AddressError,
    ConsentError,
    DKIMError,
    HeaderError,
    MessageError,
    StoreError,
    UnsubkitError,
)
from .dsn import build_dsn
from .ledger import RetryLedger, transaction_key
from .planner import Plan, Planner
from .policy import Delivery, Replies, Reply, Verdict, settle, verdict
from .upstream import Upstream

__all__ = ["Network", "RelayHandler", "RelayStats", "client_allowed"]

log = logging.getLogger("unsubkit.relay")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_allowed(peer: Any, networks: Sequence[Network]) -> bool:
    """Whether the session's peer address lies in one of ``networks``."""
    host = peer[0] if isinstance(peer, tuple) and peer else None
    if not isinstance(host, str):
        return False
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == n.version and ip in n for n in networks)


@dataclass(slots=True)
class RelayStats:
    """Counters since start (logged at shutdown; tests read them)."""

    messages: int = 0
    copies_forwarded: int = 0
    recipients_suppressed: int = 0
    deferred: int = 0
    refused: int = 0
    bounces: int = 0
    control_fields_stripped: int = 0


class RelayHandler:
    def __init__(
        self,
        planner: Planner,
        upstream: Upstream,
        *,
        networks: Sequence[Network],
        ledger: RetryLedger,
        max_recipients: int = 100,
        hostname: str = "localhost",
        clock: Clock = system_clock,
    ) -> None:
        self.planner = planner
        self.upstream = upstream
        self.networks = list(networks)
        self.ledger = ledger
        self.max_recipients = max_recipients
        self.hostname = hostname
        self.clock = clock
        self.stats = RelayStats()
        self.active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        # Commands are read and answered strictly in order, all RFC 2920 asks.
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        if not client_allowed(getattr(session, "peer", None), self.networks):
            log.warning("relay: refused client %r (not in relay_allowed_clients)",
                        getattr(session, "peer", None))
            return str(Replies.CLIENT_DENIED)
        if address not in ("", "<>"):
            try:
                normalize(address)
            except AddressError:
                return str(Replies.BAD_SENDER)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return str(Replies.OK)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        try:
            normalize(address)
        except AddressError:
            return str(Replies.BAD_RECIPIENT)
        if any(r.lower() == address.lower() for r in envelope.rcpt_tos):
            return str(Replies.RECIPIENT_OK)  # one copy per recipient, however often named
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return str(Replies.TOO_MANY_RECIPIENTS)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return str(Replies.RECIPIENT_OK)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.active += 1
        self._idle.clear()
        try:
            reply = await self._data(envelope)
        finally:
            self.active -= 1
            if not self.active:
                self._idle.set()
        if reply.temporary:
            self.stats.deferred += 1
        elif not reply.ok:
            self.stats.refused += 1
        return str(reply)

    async def wait_idle(self) -> None:
        """Until no transaction is between its DATA and its reply."""
        await self._idle.wait()

    # -- DATA ------------------------------------------------------------------------------

    async def _data(self, envelope: Any) -> Reply:
        self.stats.messages += 1
        data = envelope.original_content or b""
        if isinstance(data, str):  # only with decode_data, which the relay never sets
            data = data.encode("utf-8", "surrogateescape")
        mail_from: str = envelope.mail_from or ""
        rcpts: list[str] = list(envelope.rcpt_tos)
        key = transaction_key(mail_from, data)
        sent_before = self.ledger.sent(key)
        try:
            plan = await asyncio.to_thread(self.planner.plan, data, rcpts, key=key, skip=sent_before)
        except (MessageError, ConsentError, AddressError, HeaderError) as exc:
            log.info("relay: refused message: %s", exc)
            return Reply(554, "5.6.0", str(exc))
        except StoreError as exc:
            log.warning("relay: consent store unavailable, deferring: %s", exc)
            return Reply(451, "4.3.0", "consent store unavailable, try again later")
        except DKIMError as exc:
            log.error("relay: cannot sign, deferring: %s", exc)
            return Reply(451, "4.3.5", "DKIM signing is not possible, try again later")
        except UnsubkitError as exc:
            log.error("relay: cannot prepare the message, deferring: %s", exc)
            return Replies.TRY_LATER
        self.stats.control_fields_stripped += plan.stripped
        self._note_suppressed(plan)
        deliveries = await self._forward(mail_from, plan.copies, smtputf8=bool(envelope.smtp_utf8))
        already = sum(1 for r in rcpts if r.lower() in sent_before)
        v = verdict(deliveries, suppressed=len(plan.suppressed), already_sent=already)
        if v.bounce:
            v = settle(v, await self._bounce(mail_from, data, v), forwarded=[d.recipient for d in deliveries if d.ok])
        if v.remember:
            self.ledger.remember(key, v.remember)
        elif not v.reply.temporary:
            self.ledger.forget(key)
        self.stats.copies_forwarded += sum(1 for d in deliveries if d.ok)
        log.info("relay: %s purpose=%s brand=%s copies=%d suppressed=%d skipped=%d -> %d",
                 "commercial" if plan.commercial else "transactional", plan.purpose, plan.brand,
                 len(plan.copies), len(plan.suppressed), already, v.reply.code)
        return v.reply

    def _note_suppressed(self, plan: Plan) -> None:
        for rcpt, reason in plan.suppressed:
            self.stats.recipients_suppressed += 1
            log.info("relay: suppressed %s (%s) purpose=%s brand=%s", mask(rcpt), reason,
                     plan.purpose, plan.brand)

    async def _forward(self, mail_from: str, copies: Sequence[tuple[str, bytes]], *,
                       smtputf8: bool) -> list[Delivery]:
        if not copies:
            return []
        results = await asyncio.gather(
            *(self.upstream.send(mail_from, rcpt, raw, smtputf8=smtputf8) for rcpt, raw in copies)
        )
        for d in results:
            if not d.ok:
                log.warning("relay: upstream %s for %s: %d %s",
                            "deferred" if d.temporary else "refused", mask(d.recipient), d.code, d.reason)
        return list(results)

    async def _bounce(self, mail_from: str, data: bytes, v: Verdict) -> Delivery | None:
        if mail_from in ("", "<>"):
            # A bounce of a bounce would loop: RFC 5321 section 6.1 drops it.
            log.warning("relay: %d copy(ies) refused upstream; null sender, no bounce", len(v.bounce))
            return None
        dsn = build_dsn(data, sender=mail_from, failures=v.bounce, reporting_mta=self.hostname,
                        now=self.clock())
        result = await self.upstream.send("", mail_from, dsn)
        if result.ok:
            self.stats.bounces += 1
        else:
            log.warning("relay: bounce to %s not sent: %d %s", mask(mail_from), result.code, result.reason)
        return result

    async def handle_exception(self, error: Exception) -> str:
        # Nothing unexpected may end a session with a traceback or leak internals.
        log.error("relay: unexpected %s in SMTP session", type(error).__name__,
                  exc_info=(type(error), error, error.__traceback__))
        return str(Replies.TRY_LATER)
