"""The library facade: settings + key ring + store + clock, wired once.

>>> kit = Unsubkit.open(load_settings())                        # doctest: +SKIP
>>> result = kit.headers_for("jane@example.com", "marketing")   # doctest: +SKIP
>>> result.headers.as_dict()                                    # doctest: +SKIP
{'List-Unsubscribe': '<https://...>, <mailto:...>', 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click'}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import customer_managed
from .address import normalize
from .clock import Clock, system_clock
from .consent.decisions import Decision, decide
from .consent.model import (
    Action,
    ConsentChange,
    ConsentLevel,
    Event,
    Mechanism,
    Purpose,
    Reason,
    RequestMeta,
    Scope,
    Source,
    Topic,
)
from .errors import UnknownPurpose
from .headers import UnsubscribeHeaders, body_url, mailto_address, mailto_uri, one_click_url
from .keystore import load_ring
from .settings import DEFAULT_BRAND, Brand, Settings
from .store import ConsentStore, SQLStore
from .tokens import Claims, KeyRing, TokenCodec

__all__ = ["HeaderResult", "StatusEntry", "StatusReport", "Unsubkit", "opt_out_changes"]


@dataclass(frozen=True, slots=True)
class HeaderResult:
    """Everything a sender needs for one recipient of one message."""

    headers: UnsubscribeHeaders | None
    token: str | None
    url: str | None
    mailto: str | None
    body_url: str | None
    purpose: Purpose
    topic: Topic | None
    brand: str

    def as_json(self) -> dict[str, Any]:
        return {
            "headers": self.headers.as_dict() if self.headers else {},
            "url": self.url,
            "mailto": self.mailto,
            "body_url": self.body_url,
            "token": self.token,
        }


@dataclass(frozen=True, slots=True)
class StatusEntry:
    purpose: Purpose
    topic: Topic | None
    opted_out: bool
    reason: str


@dataclass(frozen=True, slots=True)
class StatusReport:
    address: str
    entries: list[StatusEntry]
    events: list[Event] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "consent": [
                {
                    "purpose": e.purpose.name,
                    "kind": str(e.purpose.kind),
                    "topic": e.topic.name if e.topic else None,
                    "opted_out": e.opted_out,
                    "reason": e.reason,
                }
                for e in self.entries
            ],
            "events": [event_json(ev) for ev in self.events],
        }


def event_json(ev: Event) -> dict[str, Any]:
    return {
        "id": ev.id,
        "at": ev.at,
        "address": ev.address,
        "scope": str(ev.scope.kind),
        "purpose_id": ev.scope.purpose_id,
        "topic_id": ev.scope.topic_id,
        "action": str(ev.action),
        "source": ev.source,
        "reason": ev.reason,
        "mechanism": str(ev.mechanism),
        "brand": ev.brand,
        "message_id": ev.message_id,
        "client_ip": ev.client_ip,
        "user_agent": ev.user_agent,
        "changed": ev.changed,
        "suspected_automated": ev.suspected_automated,
        "evidence": ev.evidence,
    }


def opt_out_changes(
    claims: Claims,
    brand: Brand | None,
    *,
    mechanism: Mechanism,
    source: str,
    reason: str,
    meta: RequestMeta,
) -> list[ConsentChange]:
    """What one opened token's opt-out records (pure): its scope, and the bulk-email switch
    when the brand asks one-click to set it."""
    base = ConsentChange(
        address=claims.address,
        scope=Scope.of(claims.purpose_id, claims.topic_id),
        action=Action.OPT_OUT,
        source=source,
        reason=reason,
        mechanism=mechanism,
        brand=claims.brand,
        message_id=claims.message_id,
        level=claims.level,
        contact_id=claims.contact_id,
        meta=meta,
        token_issued_at=claims.issued_at,
    )
    out = [base]
    if brand is not None and brand.one_click_sets_bulk_email and mechanism is Mechanism.ONE_CLICK:
        out.append(
            ConsentChange(
                address=claims.address,
                scope=Scope.bulk_email(),
                action=Action.OPT_OUT,
                source=source,
                reason=reason,
                mechanism=mechanism,
                brand=claims.brand,
                message_id=claims.message_id,
                level=ConsentLevel.IDENTITY,
                contact_id=claims.contact_id,
                meta=meta,
                token_issued_at=claims.issued_at,
            )
        )
    if brand is not None and brand.replace_default_with:
        # The brand's handler replaces the built-in opt-out (see unsubkit.hooks.handlers).
        out = [replace(c, replace_with=brand.replace_default_with) for c in out]
    return out


class Unsubkit:
    """The whole library behind one object. Build it once per process."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: ConsentStore,
        ring: KeyRing,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.codec = TokenCodec(ring, clock=clock, lifetime=settings.lifetime)

    @classmethod
    def open(cls, settings: Settings, *, clock: Clock = system_clock, migrate: bool = False) -> Unsubkit:
        ring = load_ring(settings.keys_path)
        store = SQLStore(settings.database_url)
        if migrate:
            store.migrate()
        return cls(settings, store=store, ring=ring, clock=clock)

    def close(self) -> None:
        self.store.close()

    # sending ------------------------------------------------------------------------------

    def resolve(self, purpose: str | int, topic: str | int | None = None) -> tuple[Purpose, Topic | None]:
        p = self.store.purpose(purpose)
        t = self.store.topic(p.id, topic) if topic is not None else None
        return p, t

    def headers_for(
        self,
        to: str,
        purpose: str | int,
        topic: str | int | None = None,
        *,
        brand: str | None = None,
        message_id: str | None = None,
        contact_id: int | None = None,
        campaign: str | None = None,
    ) -> HeaderResult:
        """Headers, URLs and token for one recipient (``to`` is a single address)."""
        address = normalize(to)
        brand_name = brand or DEFAULT_BRAND
        b = self.settings.brand(brand_name)
        p, t = self.resolve(purpose, topic)
        if not p.commercial or not b.enabled:
            # Transactional mail and disabled brands carry no unsubscribe fields.
            return HeaderResult(None, None, None, None, None, p, t, brand_name)
        level = ConsentLevel.IDENTITY if b.consent_level == "identity" else ConsentLevel.CHANNEL
        if b.customer_managed:
            # The headers point to the customer's own endpoints: no token of ours, nothing stored.
            cm = customer_managed.build_headers(
                self.codec.ring, b, brand_name, address, p.id, t.id if t else None, level=level,
                now=self.clock(), message_id=message_id, contact_id=contact_id, campaign=campaign,
            )
            return HeaderResult(cm.headers, None, cm.url, cm.mailto, cm.url or None, p, t, brand_name)
        token = self.codec.seal(
            Claims(
                address=address,
                purpose_id=p.id,
                brand=brand_name,
                topic_id=t.id if t else None,
                level=level,
                contact_id=contact_id,
                message_id=message_id,
            )
        )
        base = b.base_url or self.settings.base_url
        url = one_click_url(base, token) if b.one_click else None
        mailto = mailto_uri(mailto_address(b.mailto, token)) if b.mailto else None
        headers = UnsubscribeHeaders(url=url, mailto=mailto, one_click=b.one_click) if (url or mailto) else None
        return HeaderResult(headers, token, url, mailto, body_url(base, token), p, t, brand_name)

    # receiving ----------------------------------------------------------------------------

    def open_token(self, token: str) -> Claims:
        return self.codec.open(token)

    def brand_or_none(self, name: str) -> Brand | None:
        try:
            return self.settings.brand(name)
        except Exception:  # noqa: BLE001 - a brand removed since sending still unsubscribes
            return None

    def changes_for_token(
        self, claims: Claims, *, mechanism: Mechanism, meta: RequestMeta | None = None
    ) -> list[ConsentChange]:
        source, reason = {
            Mechanism.ONE_CLICK: (Source.LIST_UNSUBSCRIBE, Reason.ONE_CLICK),
            Mechanism.LANDING_PAGE: (Source.LIST_UNSUBSCRIBE, Reason.LANDING_PAGE),
            Mechanism.MAILTO: (Source.MAILTO, Reason.MAILTO),
            Mechanism.PREFERENCE_PAGE: (Source.PREFERENCE_CENTER, Reason.PREFERENCE),
        }.get(mechanism, (Source.API, Reason.API))
        return opt_out_changes(
            claims,
            self.brand_or_none(claims.brand),
            mechanism=mechanism,
            source=source,
            reason=reason,
            meta=meta or RequestMeta(),
        )

    def record(self, changes: Sequence[ConsentChange]) -> list[Event]:
        return self.store.record(changes, self.clock())

    # direct consent operations ------------------------------------------------------------

    def _change(
        self,
        action: Action,
        address: str,
        purpose: str | int | None,
        topic: str | int | None,
        *,
        source: str,
        reason: str,
        mechanism: Mechanism,
        brand: str,
        meta: RequestMeta | None,
    ) -> ConsentChange:
        addr = normalize(address)
        if purpose is None:
            scope = Scope.bulk_email()
        else:
            p, t = self.resolve(purpose, topic)
            scope = Scope.of(p.id, t.id if t else None)
        return ConsentChange(
            address=addr,
            scope=scope,
            action=action,
            source=source,
            reason=reason,
            mechanism=mechanism,
            brand=brand,
            meta=meta or RequestMeta(),
        )

    def unsubscribe(
        self,
        address: str,
        purpose: str | int | None,
        topic: str | int | None = None,
        *,
        source: str = Source.API,
        reason: str = Reason.API,
        mechanism: Mechanism = Mechanism.API,
        brand: str = DEFAULT_BRAND,
        meta: RequestMeta | None = None,
    ) -> Event:
        """Opt ``address`` out of a purpose, a topic, or (``purpose=None``) all bulk email."""
        ch = self._change(Action.OPT_OUT, address, purpose, topic, source=source, reason=reason,
                          mechanism=mechanism, brand=brand, meta=meta)
        return self.record([ch])[0]

    def resubscribe(
        self,
        address: str,
        purpose: str | int | None,
        topic: str | int | None = None,
        *,
        source: str = Source.API,
        reason: str = Reason.RESUBSCRIBE,
        mechanism: Mechanism = Mechanism.API,
        brand: str = DEFAULT_BRAND,
        meta: RequestMeta | None = None,
    ) -> Event:
        ch = self._change(Action.OPT_IN, address, purpose, topic, source=source, reason=reason,
                          mechanism=mechanism, brand=brand, meta=meta)
        return self.record([ch])[0]

    def can_send(self, address: str, purpose: str | int, topic: str | int | None = None) -> Decision:
        p, t = self.resolve(purpose, topic)
        return decide(p, t.id if t else None, self.store.state(normalize(address)))

    def status(self, address: str) -> StatusReport:
        addr = normalize(address)
        state = self.store.state(addr)
        entries: list[StatusEntry] = []
        for p in self.store.purposes():
            d = decide(p, None, state)
            entries.append(StatusEntry(p, None, not d.allowed, d.reason))
            for t in self.store.topics(p.id):
                dt = decide(p, t.id, state)
                entries.append(StatusEntry(p, t, not dt.allowed, dt.reason))
        return StatusReport(addr, entries, self.store.events(addr))

    def purpose_name(self, purpose_id: int) -> str:
        p = self.store.find_purpose(purpose_id)
        if p is None:
            raise UnknownPurpose(f"purpose #{purpose_id} no longer exists")
        return p.name
