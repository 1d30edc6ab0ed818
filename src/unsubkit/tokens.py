"""Opaque, authenticated unsubscribe tokens (pure: no IO, clock injected).

A token is ``base64url(version | key_id | nonce | AES-256-GCM(claims))`` without padding. The
version byte and key id are authenticated as associated data, so a token names the key that
opens it without revealing anything else; the address, purpose and message id are encrypted.
Unlike a signed-but-readable token (itsdangerous, JWT), nothing personal shows in a URL or in a
proxy's access log.

Keys live in a :class:`KeyRing`, newest first (as in itsdangerous): the newest seals, any opens.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .clock import Clock, system_clock
from .consent.model import ConsentLevel
from .errors import ExpiredToken, InvalidToken

__all__ = [
    "DEFAULT_LIFETIME",
    "Claims",
    "Key",
    "KeyRing",
    "TokenCodec",
    "new_key",
]

VERSION = 1
KEY_ID_LEN = 4
NONCE_LEN = 12
TAG_LEN = 16
HEADER_LEN = 1 + KEY_ID_LEN + NONCE_LEN
MIN_TOKEN_BYTES = HEADER_LEN + TAG_LEN + 4
#: Tokens longer than this are refused before any decoding work (cheap DoS guard).
MAX_TOKEN_CHARS = 1024
DEFAULT_LIFETIME = 180 * 86400
#: Tokens stamped slightly in the future are accepted: instances' clocks drift.
CLOCK_SKEW = 300

_FLAG_TOPIC = 0x01
_FLAG_CONTACT = 0x02
_FLAG_MESSAGE_ID = 0x04
_LEVEL_SHIFT = 3
_DEFAULT_BRAND = "default"


@dataclass(frozen=True, slots=True)
class Claims:
    """What a token says: who may be unsubscribed from what, and from which message."""

    address: str
    purpose_id: int
    brand: str = _DEFAULT_BRAND
    topic_id: int | None = None
    level: ConsentLevel = ConsentLevel.CHANNEL
    contact_id: int | None = None
    message_id: str | None = None
    issued_at: int = 0


@dataclass(frozen=True, slots=True)
class Key:
    """One AEAD key: ``id`` is 8 hex digits, ``secret`` 32 bytes. ``repr`` hides the secret."""

    id: str
    secret: bytes = field(repr=False)
    created_at: float = 0.0

    def __post_init__(self) -> None:
        if len(self.secret) != 32:
            raise ValueError("a token key must be 32 bytes (256 bits)")
        try:
            raw = bytes.fromhex(self.id)
        except ValueError as exc:
            raise ValueError("a key id is 8 hex digits") from exc
        if len(raw) != KEY_ID_LEN:
            raise ValueError("a key id is 8 hex digits")


def new_key(created_at: float) -> Key:
    return Key(id=os.urandom(KEY_ID_LEN).hex(), secret=AESGCM.generate_key(256), created_at=created_at)


class KeyRing:
    """Keys newest first; the first seals, every one opens."""

    def __init__(self, keys: Iterable[Key]) -> None:
        self._keys: tuple[Key, ...] = tuple(keys)
        if not self._keys:
            raise ValueError("a key ring needs at least one key")
        self._by_id = {bytes.fromhex(k.id): (k, AESGCM(k.secret)) for k in self._keys}
        if len(self._by_id) != len(self._keys):
            raise ValueError("duplicate key id in key ring")

    @property
    def keys(self) -> Sequence[Key]:
        return self._keys

    @property
    def current(self) -> Key:
        return self._keys[0]

    def aead_for(self, key_id: bytes) -> AESGCM | None:
        entry = self._by_id.get(key_id)
        return entry[1] if entry else None

    def __repr__(self) -> str:
        return f"KeyRing({[k.id for k in self._keys]})"


def _varint(n: int, out: bytearray) -> None:
    if n < 0:
        raise ValueError("negative integer in token claims")
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _bytes_field(data: bytes, out: bytearray) -> None:
    _varint(len(data), out)
    out += data


def _read_bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = _read_varint(buf, pos)
    end = pos + n
    if end > len(buf):
        raise ValueError("field overruns token")
    return buf[pos:end], end


def encode_claims(c: Claims) -> bytes:
    out = bytearray()
    _varint(c.issued_at, out)
    flags = int(c.level) << _LEVEL_SHIFT
    if c.topic_id is not None:
        flags |= _FLAG_TOPIC
    if c.contact_id is not None:
        flags |= _FLAG_CONTACT
    if c.message_id is not None:
        flags |= _FLAG_MESSAGE_ID
    out.append(flags)
    _varint(c.purpose_id, out)
    if c.topic_id is not None:
        _varint(c.topic_id, out)
    if c.contact_id is not None:
        _varint(c.contact_id, out)
    # The default brand is stored as an empty string: it is by far the most common.
    _bytes_field(b"" if c.brand == _DEFAULT_BRAND else c.brand.encode(), out)
    _bytes_field(c.address.encode(), out)
    if c.message_id is not None:
        _bytes_field(c.message_id.encode(), out)
    return bytes(out)


def decode_claims(buf: bytes) -> Claims:
    try:
        issued_at, pos = _read_varint(buf, 0)
        flags = buf[pos]
        pos += 1
        purpose_id, pos = _read_varint(buf, pos)
        topic_id = contact_id = None
        if flags & _FLAG_TOPIC:
            topic_id, pos = _read_varint(buf, pos)
        if flags & _FLAG_CONTACT:
            contact_id, pos = _read_varint(buf, pos)
        brand_b, pos = _read_bytes(buf, pos)
        addr_b, pos = _read_bytes(buf, pos)
        message_id = None
        if flags & _FLAG_MESSAGE_ID:
            mid_b, pos = _read_bytes(buf, pos)
            message_id = mid_b.decode()
        if pos != len(buf):
            raise ValueError("trailing bytes")
        level = ConsentLevel(flags >> _LEVEL_SHIFT)
        return Claims(
            address=addr_b.decode(),
            purpose_id=purpose_id,
            brand=brand_b.decode() or _DEFAULT_BRAND,
            topic_id=topic_id,
            level=level,
            contact_id=contact_id,
            message_id=message_id,
            issued_at=issued_at,
        )
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        # Only reachable with a valid tag, i.e. a bug or a key compromise: still never a 500.
        raise InvalidToken("token claims are malformed") from exc


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(token: str) -> bytes:
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken("token has the wrong length")
    try:
        data = token.encode("ascii")
    except UnicodeEncodeError as exc:
        raise InvalidToken("token is not base64url") from exc
    if b"=" in data or b"+" in data or b"/" in data:
        raise InvalidToken("token is not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("token is not base64url") from exc
    # The decoder ignores the unused low bits of the last character (and skips stray
    # characters), so several strings decode to the same bytes. Only the one string we issue is
    # accepted: a changed token never opens, and one token has one spelling (idempotency keys).
    if _b64encode(raw) != token:
        raise InvalidToken("token is not canonical base64url")
    return raw


class TokenCodec:
    """Seals :class:`Claims` into tokens and opens them again.

    ``lifetime`` maps a brand name to its token lifetime in seconds (``None`` -> default).
    """

    def __init__(
        self,
        ring: KeyRing,
        *,
        clock: Clock = system_clock,
        lifetime: Callable[[str], int | None] | None = None,
    ) -> None:
        self.ring = ring
        self.clock = clock
        self._lifetime = lifetime or (lambda _brand: None)

    def seal(self, claims: Claims) -> str:
        if not claims.issued_at:
            claims = replace(claims, issued_at=int(self.clock()))
        key = self.ring.current
        key_id = bytes.fromhex(key.id)
        aead = self.ring.aead_for(key_id)
        assert aead is not None
        header = struct.pack("B", VERSION) + key_id
        nonce = os.urandom(NONCE_LEN)
        ct = aead.encrypt(nonce, encode_claims(claims), header)
        return _b64encode(header + nonce + ct)

    def open(self, token: str, *, check_expiry: bool = True) -> Claims:
        raw = _b64decode(token)
        if len(raw) < MIN_TOKEN_BYTES:
            raise InvalidToken("token is truncated")
        if raw[0] != VERSION:
            raise InvalidToken("unknown token version")
        key_id = raw[1 : 1 + KEY_ID_LEN]
        aead = self.ring.aead_for(key_id)
        if aead is None:
            raise InvalidToken("token was sealed with an unknown key")
        try:
            plain = aead.decrypt(raw[1 + KEY_ID_LEN : HEADER_LEN], raw[HEADER_LEN:], raw[:1 + KEY_ID_LEN])
        except InvalidTag as exc:
            raise InvalidToken("token does not authenticate") from exc
        claims = decode_claims(plain)
        if check_expiry:
            self.check_expiry(claims)
        return claims

    def lifetime_of(self, brand: str) -> int:
        value = self._lifetime(brand)
        return DEFAULT_LIFETIME if value is None else value

    def check_expiry(self, claims: Claims) -> None:
        now = self.clock()
        if claims.issued_at > now + CLOCK_SKEW:
            raise InvalidToken("token is issued in the future")
        if now - claims.issued_at > self.lifetime_of(claims.brand):
            raise ExpiredToken("token has expired")
