"""The library facade: settings + key ring + store + clock, wired once.

>>> kit = Unsubkit.open(load_settings())                        # doctest: +SKIP
>>> result = kit.headers_for("jane@example.com", "marketing")   # doctest: +SKIP
>>> result.headers.as_dict()                                    # doctest: +SKIP
{'List-Unsubscribe': '<https://...>, <mailto:...>', 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click'}
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import customer_managed
from .address import normalize
from .clock import Clock, system_clock
from .consent.automation import AutomationHeuristics
from .consent.contacts import Contact, ContactRef, parse_contact_ref
from .consent.decisions import Decision, decide
from .consent.history import History, history_of
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
    ScopeKind,
    Source,
    Topic,
    event_json,
)
from .errors import ConsentError, UnknownPurpose
from .headers import HeaderTemplate, UnsubscribeHeaders
from .keystore import load_ring
from .lists.filter import BlockedIndex, SendCheck
from .settings import DEFAULT_BRAND, Brand, Settings
from .store import ConsentStore, SQLStore
from .tokens import Claims, KeyRing, TokenCodec

__all__ = [
    "ContactReport",
    "HeaderResult",
    "StatusEntry",
    "StatusReport",
    "Unsubkit",
    "event_json",
    "history_json",
    "opt_out_changes",
]


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


def history_json(h: History, purposes: dict[int, str], topics: dict[int, str]) -> dict[str, Any]:
    """``consent history --json``: every event with the state right after it."""

    def state(st: Any) -> dict[str, Any]:
        return {
            "purposes_opted_out": sorted(purposes.get(i, f"#{i}") for i in st.purposes_out),
            "topics_opted_out": sorted(topics.get(i, f"#{i}") for i in st.topics_out),
            "bulk_email": "do_not_allow" if st.bulk_email_blocked else "allow",
        }

    return {
        "address": h.address,
        "known": h.known,
        "contact_id": h.contact_id,
        "state": state(h.state),
        "events": [
            {
                **event_json(e.event),
                "purpose": purposes.get(e.event.scope.purpose_id or 0),
                "topic": topics.get(e.event.scope.topic_id or 0),
                "state_after": state(e.state_after),
            }
            for e in h.entries
        ],
    }


@dataclass(frozen=True, slots=True)
class ContactReport:
    """``contacts show``: a contact, its addresses and the consent that lives on it."""

    contact: Contact
    #: Scopes opted out on the contact itself (identity level), bulk email included.
    opt_outs: list[Scope]
    #: Per address: what is blocked for it right now (own and contact-level), by name.
    address_status: dict[str, list[StatusEntry]]

    @property
    def bulk_email_allowed(self) -> bool:
        return not any(s.kind is ScopeKind.BULK_EMAIL for s in self.opt_outs)

    def as_json(self, purposes: dict[int, str], topics: dict[int, str]) -> dict[str, Any]:
        c = self.contact
        return {
            "id": c.id,
            "external_id": c.external_id,
            "created_at": c.created_at,
            "deleted_at": c.deleted_at,
            "deleted": c.deleted,
            "addresses": list(c.addresses),
            "bulk_email": "allow" if self.bulk_email_allowed else "do_not_allow",
            "opt_outs": [
                {"scope": str(s.kind), "purpose": purposes.get(s.purpose_id or 0),
                 "topic": topics.get(s.topic_id or 0)}
                for s in self.opt_outs
            ],
            "address_status": {
                a: [{"purpose": e.purpose.name, "topic": e.topic.name if e.topic else None,
                     "reason": e.reason} for e in entries]
                for a, entries in self.address_status.items()
            },
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
        # Settings are frozen: resolve each brand once (``Settings.brand`` copies a model per call,
        # and tokens are opened and brands looked up on every one-click request).
        self._brands: dict[str, Brand | None] = {}
        #: (base URL, mailto, one-click) -> the brand's validated header template.
        self._templates: dict[tuple[str, str | None, bool], HeaderTemplate] = {}
        lifetimes = {name: settings.brand(name).token_lifetime for name in settings.brand_names}
        self.codec = TokenCodec(ring, clock=clock, lifetime=lifetimes.get)
        if isinstance(store, SQLStore):
            store.handlers = bool(settings.handlers)
        if isinstance(store, SQLStore) and store.annotate is None:
            # Flag likely machine opt-outs for review (never blocks them); see consent.automation.
            store.annotate = AutomationHeuristics.build(
                settings.automation_window_seconds, settings.scanner_user_agents
            )

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
        b = self.brand_or_none(brand_name) or self.settings.brand(brand_name)  # unknown: raises
        p, t = self.resolve(purpose, topic)
        if not p.commercial or not b.enabled:
            # Transactional mail and disabled brands carry no unsubscribe fields.
            return HeaderResult(None, None, None, None, None, p, t, brand_name)
        level = ConsentLevel.IDENTITY if b.consent_level == "identity" else ConsentLevel.CHANNEL
        if level is ConsentLevel.IDENTITY and contact_id is None:
            # Identity-level consent belongs to the contact owning the address at send time.
            contact_id = self.store.contact_of(address)
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
        key = (b.base_url or self.settings.base_url, b.mailto or None, b.one_click)
        tpl = self._templates.get(key)
        if tpl is None:
            tpl = self._templates[key] = HeaderTemplate(key[0], key[1], one_click=key[2])
        headers = tpl.headers(token)
        url, mailto = (headers.url, headers.mailto) if headers else (None, None)
        return HeaderResult(headers, token, url, mailto, tpl.body_url(token), p, t, brand_name)

    # receiving ----------------------------------------------------------------------------

    def open_token(self, token: str) -> Claims:
        return self.codec.open(token)

    def brand_or_none(self, name: str) -> Brand | None:
        if name in self._brands:
            return self._brands[name]
        try:
            brand: Brand | None = self.settings.brand(name)
        except Exception:  # noqa: BLE001 - a brand removed since sending still unsubscribes
            brand = None
        if len(self._brands) < 1024:  # names come from tokens: bounded, in case of junk
            self._brands[name] = brand
        return brand

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
        b = self.brand_or_none(brand)
        identity = b is not None and b.consent_level == "identity"
        return ConsentChange(
            address=addr,
            scope=scope,
            action=action,
            source=source,
            reason=reason,
            mechanism=mechanism,
            brand=brand,
            level=ConsentLevel.IDENTITY if identity else ConsentLevel.CHANNEL,
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

    def blocked_index(self, purpose: str | int, topic: str | int | None = None) -> BlockedIndex:
        """Every address a send to (purpose, topic) must skip, loaded once (see lists.filter)."""
        p, t = self.resolve(purpose, topic)
        return BlockedIndex.load(self.store, p, t)

    def can_send_many(
        self, addresses: Iterable[str], purpose: str | int, topic: str | int | None = None
    ) -> Iterator[SendCheck]:
        """The batch form of :meth:`can_send`: one :class:`SendCheck` per input address, in
        order; an invalid address is a denied check (reason ``invalid address: ...``), not an
        exception. The opt-outs are read once, up front."""
        return self.blocked_index(purpose, topic).check_many(addresses)

    def history(self, address: str) -> History:
        """Every event that shaped ``address``'s current state, each with the state after it.
        An address never seen has an empty history (nothing blocked)."""
        addr = normalize(address)
        point_id, contact_id, events = self.store.history_events(addr)
        return history_of(addr, point_id, contact_id, events)

    def events(
        self, *, since: float | None = None, mechanism: Mechanism | None = None,
        address: str | None = None, suspected: bool | None = None, limit: int | None = None,
    ) -> Iterator[Event]:
        """The event log, oldest first, streamed."""
        return self.store.iter_events(
            since=since, mechanism=mechanism, address=normalize(address) if address else None,
            suspected=suspected, limit=limit,
        )

    # contacts -----------------------------------------------------------------------------

    def add_contact(
        self, addresses: Iterable[str] = (), *, external_id: str | None = None,
        source: str = Source.CONTACTS, mechanism: Mechanism = Mechanism.API,
    ) -> Contact:
        addrs = [normalize(a) for a in addresses]
        return self.store.add_contact(external_id, addrs, at=self.clock(), source=source,
                                      mechanism=mechanism)

    def contact(self, ref: str | int | ContactRef) -> Contact:
        return self.store.find_contact(ref if isinstance(ref, ContactRef) else parse_contact_ref(ref))

    def link(
        self, ref: str | int | ContactRef, address: str, *, move: bool = False,
        source: str = Source.CONTACTS, mechanism: Mechanism = Mechanism.API,
    ) -> tuple[Contact, list[Event]]:
        """Attach ``address`` to a contact; ``move`` takes it from another contact (whose
        opt-outs are carried over onto the address first). Returns the carried-over events."""
        r = ref if isinstance(ref, ContactRef) else parse_contact_ref(ref)
        return self.store.link_address(r, normalize(address), move=move, at=self.clock(),
                                       source=source, mechanism=mechanism)

    def unlink(
        self, address: str, *, source: str = Source.CONTACTS, mechanism: Mechanism = Mechanism.API
    ) -> tuple[int, list[Event]]:
        return self.store.unlink_address(normalize(address), at=self.clock(), source=source,
                                         mechanism=mechanism)

    def delete_contact(
        self, ref: str | int | ContactRef, *, source: str = Source.CONTACTS,
        mechanism: Mechanism = Mechanism.API,
    ) -> tuple[Contact, list[Event]]:
        """Soft-delete a contact; its addresses keep every opt-out that applied through it."""
        r = ref if isinstance(ref, ContactRef) else parse_contact_ref(ref)
        return self.store.delete_contact(r, at=self.clock(), source=source, mechanism=mechanism)

    def set_bulk_email(
        self, ref: str | int | ContactRef, allowed: bool, *, source: str = Source.API,
        mechanism: Mechanism = Mechanism.API, meta: RequestMeta | None = None,
    ) -> Event:
        """The contact-level "bulk email" switch: ``allowed=False`` blocks every commercial
        purpose for all the contact's addresses."""
        contact = self.contact(ref)
        if contact.deleted:
            raise ConsentError(f"contact #{contact.id} was deleted")
        if not contact.addresses:
            raise ConsentError(f"contact #{contact.id} has no address; link one first")
        change = ConsentChange(
            address=contact.addresses[0],
            scope=Scope.bulk_email(),
            action=Action.OPT_IN if allowed else Action.OPT_OUT,
            source=source,
            reason=Reason.BULK_EMAIL_ALLOW if allowed else Reason.BULK_EMAIL_DENY,
            mechanism=mechanism,
            level=ConsentLevel.IDENTITY,
            meta=meta or RequestMeta(),
        )
        return self.record([change])[0]

    def contact_report(self, ref: str | int | ContactRef) -> ContactReport:
        contact = self.contact(ref)
        statuses = {
            a: [e for e in self.status(a).entries if e.opted_out] for a in contact.addresses
        }
        return ContactReport(contact, self.store.contact_opt_outs(contact.id), statuses)

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
