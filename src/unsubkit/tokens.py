"""Opaque, authenticated unsubscribe tokens (pure: no IO, clock injected).

A token is ``base64url(version | key_id | nonce | AES-256-GCM(claims))`` without padding. The
version byte and key id are authenticated as associated data, so a token names the key that
opens it without revealing anything else; the address, purpose and message id are encrypted.
Unlike a signed-but-readable token (itsdangerous, JWT), nothing personal shows in a URL or in a
proxy's access log.

Keys live in a :class:`KeyRing`, newest first (as in itsdangerous): the newest seals, any opens.
"""

from __future__ import annotations

import binascii
import os
import struct
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

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

#: 2: fixed-width issued-at (1 was a varint); a version-1 token is refused as unknown.
VERSION = 2
KEY_ID_LEN = 4
NONCE_LEN = 12
TAG_LEN = 16
HEADER_LEN = 1 + KEY_ID_LEN + NONCE_LEN
_AD_LEN = 1 + KEY_ID_LEN  # the authenticated (not encrypted) prefix: version and key id
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
#: ``ConsentLevel(n)`` is an enum call (slow); a tuple lookup is not. Unknown -> IndexError.
_LEVELS = tuple(ConsentLevel)
_HEAD = struct.Struct(">IB")  # issued-at (good until 2106), flags
_B64_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_URLSAFE_TO_B64 = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", b"", b"==", b"=")  # indexed by len % 4 (1 is never valid)
_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#: Last characters a canonical encoding can end with, by length % 4: after 2 characters (one
#: byte) the low 4 bits are unused and must be 0, after 3 (two bytes) the low 2 bits.
_CANONICAL_LAST: tuple[frozenset[int], ...] = (
    frozenset(_B64URL_ALPHABET),
    frozenset(),
    frozenset(c for i, c in enumerate(_B64URL_ALPHABET) if not i & 0x0F),
    frozenset(c for i, c in enumerate(_B64URL_ALPHABET) if not i & 0x03),
)


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
        current_id = bytes.fromhex(self._keys[0].id)
        #: (authenticated header, AEAD) of the current key, computed once: sealing is hot.
        self.sealer: tuple[bytes, AESGCM] = (bytes([VERSION]) + current_id, self._by_id[current_id][1])
        #: The AEAD by a token's authenticated header (version byte + key id): one lookup checks both.
        self.openers: dict[bytes, AESGCM] = {bytes([VERSION]) + kid: e[1] for kid, e in self._by_id.items()}

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


#: Nonces are drawn from the OS CSPRNG this many at a time (one getrandom call instead of one
#: per token); each is used once. Still 96 random bits per token, as with ``os.urandom(12)``.
_NONCE_BATCH = 256
_CODECS: weakref.WeakSet[TokenCodec] = weakref.WeakSet()


def _drop_nonce_pools() -> None:
    # A forked child must never use the nonces its parent still holds (the same key and nonce
    # twice breaks AES-GCM): every pool is dropped in the child.
    for codec in list(_CODECS):
        codec._nonces = iter(())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_nonce_pools)


def _varint(n: int, out: bytearray) -> None:
    if n < 0x80:
        if n < 0:
            raise ValueError("negative integer in token claims")
        out.append(n)
        return
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
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


def encode_claims(c: Claims, issued_at: int | None = None) -> bytes:
    """The compact binary form; ``issued_at`` overrides the claims' own stamp.

    Layout: issued-at (uint32, seconds), flags (topic, contact, message id; level in the high
    bits), purpose id, [topic id], [contact id] as varints, then brand, address, [message id]
    as length-prefixed UTF-8. The default brand is stored as an empty string.
    """
    # The common case (default brand, no contact id, small ids, short strings: every length and
    # id one varint byte) as a few concatenations; the same bytes as the general path below.
    pid, topic, mid = c.purpose_id, c.topic_id, c.message_id
    if c.contact_id is None and c.brand == _DEFAULT_BRAND and 0 <= pid < 0x80:
        a = c.address.encode()
        m = b"" if mid is None else mid.encode()
        if len(a) < 0x80 and len(m) < 0x80 and (topic is None or 0 <= topic < 0x80):
            flags = c.level << _LEVEL_SHIFT
            if mid is not None:
                flags |= _FLAG_MESSAGE_ID
            if topic is None:
                ids = bytes((pid, 0, len(a)))  # purpose, empty (default) brand, address length
            else:
                flags |= _FLAG_TOPIC
                ids = bytes((pid, topic, 0, len(a)))
            try:
                head = _HEAD.pack(c.issued_at if issued_at is None else issued_at, flags)
            except struct.error as exc:
                raise ValueError("issued_at or consent level out of range") from exc
            return head + ids + a if mid is None else b"".join((head, ids, a, bytes((len(m),)), m))
    return _encode_claims_general(c, issued_at)


def _encode_claims_general(c: Claims, issued_at: int | None = None) -> bytes:
    flags = c.level << _LEVEL_SHIFT
    if c.topic_id is not None:
        flags |= _FLAG_TOPIC
    if c.contact_id is not None:
        flags |= _FLAG_CONTACT
    if c.message_id is not None:
        flags |= _FLAG_MESSAGE_ID
    try:
        out = bytearray(_HEAD.pack(c.issued_at if issued_at is None else issued_at, flags))
    except struct.error as exc:
        raise ValueError("issued_at or consent level out of range") from exc
    _varint(c.purpose_id, out)
    if c.topic_id is not None:
        _varint(c.topic_id, out)
    if c.contact_id is not None:
        _varint(c.contact_id, out)
    _bytes_field(b"" if c.brand == _DEFAULT_BRAND else c.brand.encode(), out)
    _bytes_field(c.address.encode(), out)
    if c.message_id is not None:
        _bytes_field(c.message_id.encode(), out)
    return bytes(out)


def decode_claims(buf: bytes) -> Claims:
    # Single-byte varints (the common case) are read inline: opening a token is the hot path.
    try:
        issued_at, flags = _HEAD.unpack_from(buf)
        pos = _HEAD.size
        n = buf[pos]
        if n < 0x80:
            purpose_id, pos = n, pos + 1
        else:
            purpose_id, pos = _read_varint(buf, pos)
        topic_id = contact_id = message_id = None
        if flags & _FLAG_TOPIC:
            n = buf[pos]
            if n < 0x80:
                topic_id, pos = n, pos + 1
            else:
                topic_id, pos = _read_varint(buf, pos)
        if flags & _FLAG_CONTACT:
            contact_id, pos = _read_varint(buf, pos)
        n = buf[pos]
        if n:
            brand_b, pos = _read_bytes(buf, pos)
            brand = brand_b.decode()
        else:
            brand, pos = _DEFAULT_BRAND, pos + 1
        n = buf[pos]
        if n < 0x80:
            pos += 1
        else:
            n, pos = _read_varint(buf, pos)
        end = pos + n
        address = buf[pos:end].decode()
        pos = end
        if flags & _FLAG_MESSAGE_ID:
            n = buf[pos]
            if n < 0x80:
                pos += 1
            else:
                n, pos = _read_varint(buf, pos)
            end = pos + n
            if end > len(buf):
                raise ValueError("field overruns token")
            message_id = buf[pos:end].decode()
            pos = end
        if pos != len(buf):
            raise ValueError("trailing bytes or truncated field")
        level = _LEVELS[flags >> _LEVEL_SHIFT]
    except (IndexError, ValueError, UnicodeDecodeError, struct.error) as exc:
        # Only reachable with a valid tag, i.e. a bug or a key compromise: still never a 500.
        raise InvalidToken("token claims are malformed") from exc
    # Filled through the slot descriptors: half the cost of the frozen dataclass's ``__init__``
    # (which goes through ``object.__setattr__`` per field). Same fields, same object.
    c = _new(Claims)
    _set_address(c, address)
    _set_purpose_id(c, purpose_id)
    _set_brand(c, brand)
    _set_topic_id(c, topic_id)
    _set_level(c, level)
    _set_contact_id(c, contact_id)
    _set_message_id(c, message_id)
    _set_issued_at(c, issued_at)
    return c



def _slot_setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    """The ``__set__`` of a slot: fills a fresh (frozen) instance without ``object.__setattr__``."""
    setter: Callable[[Any, Any], None] = vars(cls)[name].__set__
    return setter


_new = object.__new__
_set_address = _slot_setter(Claims, "address")
_set_purpose_id = _slot_setter(Claims, "purpose_id")
_set_brand = _slot_setter(Claims, "brand")
_set_topic_id = _slot_setter(Claims, "topic_id")
_set_level = _slot_setter(Claims, "level")
_set_contact_id = _slot_setter(Claims, "contact_id")
_set_message_id = _slot_setter(Claims, "message_id")
_set_issued_at = _slot_setter(Claims, "issued_at")


def _b64encode_bytes(raw: bytes) -> bytes:
    return binascii.b2a_base64(raw, newline=False).translate(_B64_TO_URLSAFE).rstrip(b"=")


def _b64encode(raw: bytes) -> str:
    return _b64encode_bytes(raw).decode("ascii")


def _b64decode(token: str) -> bytes:
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken("token has the wrong length")
    try:
        data = token.encode("ascii")
        if data.translate(None, _B64URL_ALPHABET):  # '+', '/', '=', space, ...: not ours
            raise ValueError("not base64url")
        raw = binascii.a2b_base64(data.translate(_URLSAFE_TO_B64) + _PADDING[len(data) % 4], strict_mode=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise InvalidToken("token is not unpadded base64url") from exc
    # The decoder ignores the unused low bits of the last character, so several strings decode
    # to the same bytes. Only the one string we issue is accepted: a changed token never opens,
    # and one token has one spelling (idempotency keys). Checked on the last character alone.
    if data[-1] not in _CANONICAL_LAST[len(data) % 4]:
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
        # ``next`` on a list iterator is atomic under the GIL: threads never share a nonce.
        self._nonces: Iterator[bytes] = iter(())
        _CODECS.add(self)

    def _refill(self) -> bytes:
        pool = os.urandom(NONCE_LEN * _NONCE_BATCH)
        # Racing refills each draw fresh bytes; a pool replaced unused is discarded, never reused.
        self._nonces = iter([pool[i : i + NONCE_LEN] for i in range(NONCE_LEN, len(pool), NONCE_LEN)])
        return pool[:NONCE_LEN]

    def seal(self, claims: Claims) -> str:
        """The token for ``claims``; an ``issued_at`` of 0 is stamped with the clock."""
        header, aead = self.ring.sealer
        nonce = next(self._nonces, None) or self._refill()
        plain = encode_claims(claims, claims.issued_at or int(self.clock()))
        return _b64encode(header + nonce + aead.encrypt(nonce, plain, header))

    def open(self, token: str, *, check_expiry: bool = True) -> Claims:
        """The claims of a token we sealed, or :class:`InvalidToken` / :class:`ExpiredToken`.

        Written flat on purpose: this runs once per one-click request and per landing-page view.
        """
        raw = _b64decode(token)
        header = raw[:_AD_LEN]
        aead = self.ring.openers.get(header)
        if aead is None or len(raw) < MIN_TOKEN_BYTES:
            if len(raw) < MIN_TOKEN_BYTES:
                raise InvalidToken("token is truncated")
            if raw[0] != VERSION:
                raise InvalidToken("unknown token version")
            raise InvalidToken("token was sealed with an unknown key")
        try:
            plain = aead.decrypt(raw[_AD_LEN:HEADER_LEN], raw[HEADER_LEN:], header)
        except InvalidTag as exc:
            raise InvalidToken("token does not authenticate") from exc
        claims = decode_claims(plain)
        if check_expiry:
            now = self.clock()
            issued = claims.issued_at
            if issued > now + CLOCK_SKEW:
                raise InvalidToken("token is issued in the future")
            lifetime = self._lifetime(claims.brand)
            if now - issued > (DEFAULT_LIFETIME if lifetime is None else lifetime):
                raise ExpiredToken("token has expired")
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
