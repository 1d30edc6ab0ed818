"""Customer-managed mode: the sender keeps consent in its own system (pure: no IO).

For a brand with ``customer_managed = true`` the unsubscribe headers point to the customer's
own one-click URL and mailto address instead of ours, as in Adobe Journey Optimizer's
"customer managed" option::

    List-Unsubscribe: <https://crm.example.com/unsub?params=P&pid=Q>,
        <mailto:unsub@crm.example.com?subject=unsubscribe%20v1.P.Q>
    List-Unsubscribe-Post: List-Unsubscribe=One-Click

``params`` (message, campaign, purpose/topic, scope, brand) and ``pid`` (the profile: id,
namespace, address) are sealed like our tokens, AES-256-GCM with the key ring, but under
their own version bytes, so neither can stand in for a one-click token or for each other. The
customer's system opens them with ``GET /api/v1/decrypt?params=P&pid=Q`` (or
``?emailParams=v1.P.Q`` for the mailto variant) and gets Adobe's consent JSON::

    {"profileNameSpace": "Email", "profileId": "jane@example.com",
     "emailAddress": "jane@example.com", "emailNameSpace": "Email", "sandboxId": "brand",
     "optOutLevel": "channel", "channelType": "email", "timestamp": "2026-...Z", ...}

unsubkit records nothing for these unsubscribes: they never reach it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from cryptography.exceptions import InvalidTag

from .clock import to_datetime
from .consent.model import ConsentLevel, ScopeKind
from .errors import ConfigError, ExpiredToken, InvalidToken
from .headers import UnsubscribeHeaders, mailto_uri
from .settings import Brand
from .tokens import CLOCK_SKEW, KEY_ID_LEN, NONCE_LEN, KeyRing

__all__ = [
    "CustomerHeaders",
    "Params",
    "Profile",
    "build_headers",
    "consent_json",
    "customer_mailto_uri",
    "customer_url",
    "email_params",
    "open_params",
    "open_profile",
    "seal_params",
    "seal_profile",
    "split_email_params",
]

PARAMS_VERSION = 0x50
PID_VERSION = 0x51
MAX_CHARS = 2048
_EMAIL_PARAMS = re.compile(r"v1\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")
EMAIL_NAMESPACE = "Email"
CONTACT_NAMESPACE = "contact"


@dataclass(frozen=True, slots=True)
class Params:
    """What ``params`` carries: where the unsubscribe came from and what it covers."""

    brand: str
    purpose_id: int
    topic_id: int | None = None
    level: ConsentLevel = ConsentLevel.CHANNEL
    message_id: str | None = None
    campaign: str | None = None
    issued_at: int = 0
    #: Random, shared with the ``pid`` sealed beside it: a pair from two messages is refused.
    link: str = ""

    @property
    def scope(self) -> ScopeKind:
        return ScopeKind.PURPOSE if self.topic_id is None else ScopeKind.TOPIC


@dataclass(frozen=True, slots=True)
class Profile:
    """What ``pid`` carries: who."""

    profile_id: str
    namespace: str
    address: str
    email_namespace: str = EMAIL_NAMESPACE
    link: str = ""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or len(text) > MAX_CHARS or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise InvalidToken("not an unpadded base64url value")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("not base64url") from exc


def _seal(ring: KeyRing, version: int, data: dict[str, Any]) -> str:
    key_id = bytes.fromhex(ring.current.id)
    aead = ring.aead_for(key_id)
    assert aead is not None
    header = struct.pack("B", version) + key_id
    nonce = os.urandom(NONCE_LEN)
    plain = json.dumps({k: v for k, v in data.items() if v is not None}, separators=(",", ":")).encode()
    return _b64(header + nonce + aead.encrypt(nonce, plain, header))


def _open(ring: KeyRing, version: int, text: str, what: str) -> dict[str, Any]:
    raw = _unb64(text)
    head = 1 + KEY_ID_LEN
    if len(raw) < head + NONCE_LEN + 16 + 2:
        raise InvalidToken(f"{what} is truncated")
    if raw[0] != version:
        raise InvalidToken(f"not a {what} value")
    aead = ring.aead_for(raw[1:head])
    if aead is None:
        raise InvalidToken(f"{what} was sealed with an unknown key")
    try:
        plain = aead.decrypt(raw[head : head + NONCE_LEN], raw[head + NONCE_LEN :], raw[:head])
    except InvalidTag as exc:
        raise InvalidToken(f"{what} does not authenticate") from exc
    try:
        data = json.loads(plain)
    except ValueError as exc:
        raise InvalidToken(f"{what} is malformed") from exc
    if not isinstance(data, dict):
        raise InvalidToken(f"{what} is malformed")
    return data


def seal_params(ring: KeyRing, p: Params) -> str:
    return _seal(ring, PARAMS_VERSION, {
        "s": p.brand, "p": p.purpose_id, "t": p.topic_id, "l": int(p.level), "m": p.message_id,
        "ci": p.campaign, "iat": p.issued_at, "k": p.link,
    })


def open_params(ring: KeyRing, text: str) -> Params:
    d = _open(ring, PARAMS_VERSION, text, "params")
    try:
        return Params(
            brand=str(d["s"]), purpose_id=int(d["p"]),
            topic_id=int(d["t"]) if d.get("t") is not None else None,
            level=ConsentLevel(int(d.get("l", 0))), message_id=d.get("m"), campaign=d.get("ci"),
            issued_at=int(d["iat"]), link=str(d.get("k", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidToken("params is malformed") from exc


def seal_profile(ring: KeyRing, p: Profile) -> str:
    return _seal(ring, PID_VERSION, {
        "pid": p.profile_id, "pns": p.namespace, "e": p.address, "ens": p.email_namespace, "k": p.link,
    })


def open_profile(ring: KeyRing, text: str) -> Profile:
    d = _open(ring, PID_VERSION, text, "pid")
    try:
        return Profile(profile_id=str(d["pid"]), namespace=str(d["pns"]), address=str(d["e"]),
                       email_namespace=str(d.get("ens", EMAIL_NAMESPACE)), link=str(d.get("k", "")))
    except (KeyError, TypeError) as exc:
        raise InvalidToken("pid is malformed") from exc


def customer_url(base: str, params: str, pid: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}{urlencode({'params': params, 'pid': pid})}"


def email_params(params: str, pid: str) -> str:
    """Both values in one string for the mailto subject (``v1.<params>.<pid>``)."""
    return f"v1.{params}.{pid}"


def split_email_params(value: str) -> tuple[str, str]:
    """From ``v1.P.Q``, or a whole subject such as ``unsubscribe v1.P.Q``."""
    m = _EMAIL_PARAMS.search(value or "")
    if not m:
        raise InvalidToken("emailParams must contain v1.<params>.<pid>")
    return m.group(1), m.group(2)


def customer_mailto_uri(address: str, params: str, pid: str) -> str:
    return mailto_uri(address, subject=f"unsubscribe {email_params(params, pid)}")


@dataclass(frozen=True, slots=True)
class CustomerHeaders:
    headers: UnsubscribeHeaders
    url: str | None
    mailto: str | None
    params: str
    pid: str


def build_headers(
    ring: KeyRing,
    brand: Brand,
    brand_name: str,
    address: str,
    purpose_id: int,
    topic_id: int | None,
    *,
    level: ConsentLevel,
    now: float,
    message_id: str | None = None,
    contact_id: int | None = None,
    campaign: str | None = None,
) -> CustomerHeaders:
    """Headers pointing to the brand's own endpoints (``address`` already normalized)."""
    if not (brand.customer_url or brand.customer_mailto):
        raise ConfigError(f"brand {brand_name!r} is customer-managed but has no customer_url or customer_mailto")
    link = _b64(os.urandom(6))
    if contact_id is not None:
        profile = Profile(str(contact_id), CONTACT_NAMESPACE, address, link=link)
    else:
        profile = Profile(address, EMAIL_NAMESPACE, address, link=link)
    params = seal_params(ring, Params(brand_name, purpose_id, topic_id, level, message_id, campaign,
                                      int(now), link))
    pid = seal_profile(ring, profile)
    url = customer_url(brand.customer_url, params, pid) if brand.customer_url and brand.one_click else None
    mailto = customer_mailto_uri(brand.customer_mailto, params, pid) if brand.customer_mailto else None
    if url is None and mailto is None:
        raise ConfigError(f"brand {brand_name!r}: one_click is off and there is no customer_mailto")
    return CustomerHeaders(UnsubscribeHeaders(url=url, mailto=mailto, one_click=brand.one_click), url, mailto,
                           params, pid)


def consent_json(
    ring: KeyRing,
    params: str,
    pid: str,
    *,
    now: float,
    lifetime: int,
    purpose_name: Callable[[int, int | None], tuple[str | None, str | None]] | None = None,
) -> dict[str, Any]:
    """Open ``params`` and ``pid`` and answer with the consent JSON (see module docstring).

    ``purpose_name`` maps (purpose_id, topic_id) to (purpose, topic) names, or is ``None``.
    Raises :class:`InvalidToken` (tampered, mismatched) or :class:`ExpiredToken`.
    """
    p = open_params(ring, params)
    prof = open_profile(ring, pid)
    if not p.link or p.link != prof.link:
        raise InvalidToken("params and pid do not belong to the same message")
    if p.issued_at > now + CLOCK_SKEW:
        raise InvalidToken("params are issued in the future")
    if now - p.issued_at > lifetime:
        raise ExpiredToken("params have expired")
    names = purpose_name(p.purpose_id, p.topic_id) if purpose_name else (None, None)
    return {
        "profileNameSpace": prof.namespace,
        "profileId": prof.profile_id,
        "emailAddress": prof.address,
        "emailNameSpace": prof.email_namespace,
        "sandboxId": p.brand,
        "optOutLevel": p.level.label,
        "channelType": "email",
        "timestamp": to_datetime(now).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        # Beyond Adobe's fields: what the unsubscribe covers and where it came from.
        "unsubscribeScope": str(p.scope),
        "purposeId": p.purpose_id,
        "purpose": names[0],
        "topicId": p.topic_id,
        "topic": names[1],
        "messageId": p.message_id,
        "campaignId": p.campaign,
        "issuedAt": to_datetime(p.issued_at).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
