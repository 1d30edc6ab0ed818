"""DKIM signing (RFC 6376) with ``rsa-sha256`` and ``ed25519-sha256`` (RFC 8463) — pure.

Bytes in, bytes out; the private key is a ``cryptography`` key object, so the expensive part
(the RSA or Ed25519 operation) runs in OpenSSL. Everything else works on the raw message bytes
with ``hashlib`` and a few compiled regular expressions: no ``email`` package on this path.

Two choices matter for one-click unsubscribe (RFC 8058 section 4):

* ``h=`` names ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` (dkimpy's default omits the
  latter, and without it mailbox providers show no button);
* every name is **oversigned**: listed once more than it occurs in the message, so a copy added
  later by a forwarder or list (a second ``List-Unsubscribe``, a ``Reply-To``) breaks the
  signature instead of riding along under it. A name absent from the message is listed once.

Several signers (e.g. RSA and Ed25519 under two selectors) sign in one call with
:func:`sign_message`; the body is canonicalized and hashed once per canonicalization.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Final, Literal, TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from .clock import Clock
from .errors import DKIMError

__all__ = [
    "DEFAULT_HEADERS",
    "MIN_RSA_BITS",
    "DKIMSigner",
    "PrivateKey",
    "PublicKey",
    "canonicalize_body",
    "load_private_key",
    "sign_message",
    "txt_record",
]

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ed25519.Ed25519PublicKey
Canon = Literal["simple", "relaxed"]

#: Header fields signed by default (each one oversigned).
DEFAULT_HEADERS: Final[tuple[str, ...]] = (
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Reply-To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
MIN_RSA_BITS: Final = 2048

_CRLF = b"\r\n"
# A header field ends at a CRLF not followed by WSP (a continuation line).
_FIELD_END = re.compile(rb"\r\n(?![ \t])")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_SPACES = re.compile(rb"  +")
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$")
_HEADER_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")
_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


# -- canonicalization (RFC 6376 section 3.4) ------------------------------------------------


def _collapse_wsp(data: bytes) -> bytes:
    """Every run of spaces and tabs becomes one space.

    Tabs go first with ``bytes.replace``; the remaining pattern then starts with a literal,
    which lets the regular-expression engine jump between candidates instead of trying
    every position of the body (that cost more than the hash).
    """
    if b"\t" in data:
        data = data.replace(b"\t", b" ")
    if b"  " in data:
        data = _SPACES.sub(b" ", data)
    return data


def _strip_trailing_crlfs(body: bytes) -> bytes:
    stripped = body.rstrip(b"\r\n")
    tail = body[len(stripped):]
    if len(tail) % 2 == 0 and tail == _CRLF * (len(tail) // 2):
        return stripped
    # The tail mixes bare CR/LF with CRLF (malformed input): remove whole CRLFs only.
    end = len(body)
    while body.endswith(_CRLF, 0, end):
        end -= 2
    return body[:end]


def canonicalize_body(body: bytes, canon: Canon) -> bytes:
    """The canonical form of a CRLF body (what ``bh=`` hashes)."""
    if canon == "simple":
        return _strip_trailing_crlfs(body) + _CRLF
    body = _collapse_wsp(body)
    if b" \r\n" in body:
        body = body.replace(b" \r\n", _CRLF)
    if body.endswith(b" "):
        body = body[:-1]
    body = _strip_trailing_crlfs(body)
    return body + _CRLF if body else b""


def _relaxed_value(value: bytes) -> bytes:
    value = value.replace(_CRLF, b"")  # unfold (returns the same object when not folded)
    if b"\t" in value:
        value = value.replace(b"\t", b" ")
    if b"  " in value:
        value = _SPACES.sub(b" ", value)
    return value.strip(b" ")


def _relaxed_field(field: bytes) -> bytes:
    colon = field.index(b":")
    return field[:colon].rstrip(b" \t").lower() + b":" + _relaxed_value(field[colon + 1 :])


# -- message parsing (bytes only) ----------------------------------------------------------


class _Parsed:
    """A message split once for any number of signers."""

    __slots__ = ("body", "bodyhash", "fields", "out", "sep")

    def __init__(self, message: bytes) -> None:
        if not isinstance(message, bytes | bytearray | memoryview):
            raise DKIMError("a message to sign must be bytes")
        data = bytes(message)
        n_lf = data.count(b"\n")
        n_crlf = data.count(_CRLF)
        if n_lf == n_crlf:
            self.sep = _CRLF
            self.out = data
        elif n_crlf == 0:
            # LF-only input (a file on disk, a pipe): sign its CRLF form, keep its style.
            self.sep = b"\n"
            self.out = data
            data = data.replace(b"\n", _CRLF)
        else:
            # Mixed line endings: send the CRLF form that was signed.
            data = _BARE_LF.sub(_CRLF, data)
            self.sep = _CRLF
            self.out = data
        if data.startswith(_CRLF):
            head, body = b"", data[2:]
        else:
            i = data.find(b"\r\n\r\n")
            if i < 0:
                head, body = data.removesuffix(_CRLF), b""
            else:
                head, body = data[:i], data[i + 4 :]
        if not head:
            raise DKIMError("message has no header fields")
        fields: dict[bytes, list[bytes]] = {}
        for field in _FIELD_END.split(head):
            colon = field.find(b":")
            if colon <= 0:
                raise DKIMError("malformed header line (no field name and colon)")
            key = field[:colon].rstrip(b" \t").lower()
            got = fields.get(key)
            if got is None:
                fields[key] = [field]
            else:
                got.append(field)
        self.fields = fields
        self.body = body
        self.bodyhash: dict[str, bytes] = {}

    def body_hash(self, canon: Canon) -> bytes:
        bh = self.bodyhash.get(canon)
        if bh is None:
            digest = hashlib.sha256(canonicalize_body(self.body, canon)).digest()
            bh = self.bodyhash[canon] = base64.b64encode(digest)
        return bh


# -- keys ----------------------------------------------------------------------------------


def load_private_key(pem: bytes) -> PrivateKey:
    """Parse a PEM private key (PKCS#8 or traditional) into a signing key, or raise DKIMError."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # Never echo the input: it is key material.
        raise DKIMError("not a usable unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise DKIMError(f"unsupported DKIM key type {type(key).__name__}: use RSA or Ed25519")
    return key


def txt_record(public_key: PublicKey | PrivateKey) -> str:
    """The DNS TXT record text to publish at ``selector._domainkey.domain``."""
    if isinstance(public_key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        public_key = public_key.public_key()
    if isinstance(public_key, rsa.RSAPublicKey):
        der = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        # RFC 8463 section 4.2: the bare 32-byte key, not an ASN.1 structure.
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    raise DKIMError(f"unsupported DKIM key type {type(public_key).__name__}")


# -- the signer ----------------------------------------------------------------------------


def _check_domain(domain: str) -> str:
    try:
        ascii_domain = domain.strip().rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise DKIMError(f"invalid DKIM domain {domain!r}") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(lb) for lb in labels):
        raise DKIMError(f"invalid DKIM domain {domain!r}")
    return ascii_domain


def _check_selector(selector: str) -> str:
    labels = selector.strip().split(".")
    if not selector.strip() or not all(_LABEL.match(lb) for lb in labels):
        raise DKIMError(f"invalid DKIM selector {selector!r}")
    return selector.strip()


def _fold_tags(parts: Iterable[str], first: int, width: int = 76) -> str:
    """Join ``parts`` with single spaces, starting a new line (CRLF TAB) when one is full."""
    out: list[str] = []
    col = first
    for part in parts:
        if out and col + 1 + len(part) > width:
            out.append("\r\n\t")
            col = 8
        elif out:
            out.append(" ")
            col += 1
        out.append(part)
        col += len(part)
    return "".join(out)


class DKIMSigner:
    """Signs messages for one ``d=`` domain and ``s=`` selector with one private key.

    ``clock`` (seconds since the epoch) adds ``t=``; with ``expire_after`` also ``x=``.
    ``oversign=False`` lists each present header once (not recommended; see module doc).
    """

    __slots__ = (
        "_body_canon",
        "_header_canon",
        "_heads",
        "_names",
        "_prefix",
        "algorithm",
        "canonicalization",
        "clock",
        "domain",
        "expire_after",
        "identity",
        "key",
        "oversign",
        "selector",
    )

    def __init__(
        self,
        key: PrivateKey,
        *,
        domain: str,
        selector: str,
        canonicalization: str = "relaxed/relaxed",
        headers: Sequence[str] = DEFAULT_HEADERS,
        oversign: bool = True,
        identity: str | None = None,
        clock: Clock | None = None,
        expire_after: int | None = None,
    ) -> None:
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < MIN_RSA_BITS:
                raise DKIMError(f"RSA DKIM keys need at least {MIN_RSA_BITS} bits, got {key.key_size}")
            self.algorithm = "rsa-sha256"
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            self.algorithm = "ed25519-sha256"
        else:
            raise DKIMError(f"unsupported DKIM key type {type(key).__name__}: use RSA or Ed25519")
        self.key = key
        self.domain = _check_domain(domain)
        self.selector = _check_selector(selector)
        hc, _, bc = canonicalization.strip().lower().partition("/")
        bc = bc or "simple"  # RFC 6376 3.5: "c=relaxed" means relaxed/simple
        if hc not in ("simple", "relaxed") or bc not in ("simple", "relaxed"):
            raise DKIMError(f"unknown canonicalization {canonicalization!r}")
        self._header_canon: Canon = "relaxed" if hc == "relaxed" else "simple"
        self._body_canon: Canon = "relaxed" if bc == "relaxed" else "simple"
        self.canonicalization = f"{hc}/{bc}"
        names: list[str] = []
        seen: set[str] = set()
        for name in headers:
            if not _HEADER_NAME.match(name):
                raise DKIMError(f"invalid header name {name!r} in h=")
            if name.lower() not in seen:
                seen.add(name.lower())
                names.append(name)
        if "from" not in seen:
            raise DKIMError("h= must include From (RFC 6376 section 5.4)")
        self._names = tuple((n, n.lower().encode("ascii")) for n in names)
        self.oversign = oversign
        if identity is not None:
            _, at, idom = identity.rpartition("@")
            idom = idom.lower()
            if not at or not (idom == self.domain or idom.endswith("." + self.domain)):
                raise DKIMError("i= must be an address in the d= domain or a subdomain of it")
        self.identity = identity
        if expire_after is not None and (clock is None or expire_after <= 0):
            raise DKIMError("x= needs a clock and a positive expire_after")
        self.clock = clock
        self.expire_after = expire_after
        self._heads: dict[tuple[int, ...], tuple[bytes, bytes]] = {}
        self._prefix = (
            f"v=1; a={self.algorithm}; c={self.canonicalization}; d={self.domain}; "
            f"s={self.selector};"
        )

    @classmethod
    def from_pem(cls, pem: bytes, **kwargs: object) -> DKIMSigner:
        return cls(load_private_key(pem), **kwargs)  # type: ignore[arg-type]

    @property
    def dns_name(self) -> str:
        """Where the public key is published."""
        return f"{self.selector}._domainkey.{self.domain}"

    def txt_record(self) -> str:
        return txt_record(self.key)

    def __repr__(self) -> str:  # never the key
        return f"DKIMSigner({self.algorithm}, d={self.domain}, s={self.selector})"

    # -- signing --------------------------------------------------------------------------

    def signature_field(self, message: bytes) -> bytes:
        """The ``DKIM-Signature`` field (CRLF-terminated) for ``message``, not prepended."""
        return self._field(_Parsed(message))

    def sign(self, message: bytes) -> bytes:
        """``message`` with its signature field prepended (line endings as in the input)."""
        return sign_message(message, [self])

    def _head(self, counts: tuple[int, ...]) -> tuple[bytes, bytes]:
        """The fixed start of the field for one header layout, raw and relaxed.

        Messages from one template share their layout (how often each signed name occurs), so
        the folded ``h=`` text is built once per layout, not once per message.
        """
        cached = self._heads.get(counts)
        if cached is not None:
            return cached
        h_names: list[str] = []
        for (name, _), n in zip(self._names, counts, strict=True):
            h_names.extend([name] * (n + self.oversign if n else int(self.oversign)))
        tags = [self._prefix]
        if self.identity is not None:
            tags.append(f"i={self.identity};")
        h_parts = [f"{n}:" for n in h_names]
        h_parts[0] = "h=" + h_parts[0]
        h_parts[-1] = h_parts[-1][:-1] + ";"
        raw = f"DKIM-Signature: {_fold_tags(tags, 16)}\r\n\t{_fold_h(h_parts)}\r\n\t".encode()
        # The relaxed form of the same bytes; the sentinel keeps the trailing space that
        # relaxed canonicalization would strip at the very end of a field value.
        relaxed = _relaxed_field(raw + b"~")[:-1]
        if len(self._heads) < 64:
            self._heads[counts] = (raw, relaxed)
        return raw, relaxed

    def _field(self, msg: _Parsed) -> bytes:
        fields = msg.fields
        if b"from" not in fields:
            raise DKIMError("message has no From field (RFC 6376 requires signing it)")
        relaxed = self._header_canon == "relaxed"
        signed: list[bytes] = []
        counts: list[int] = []
        for _, key in self._names:
            found = fields.get(key)
            if found:
                if len(found) == 1:
                    signed.append(_relaxed_field(found[0]) if relaxed else found[0])
                else:
                    # RFC 6376 5.4.2: repeated names take instances from the bottom up.
                    signed.extend(_relaxed_field(f) if relaxed else f for f in reversed(found))
                counts.append(len(found))
            else:
                counts.append(0)
        raw_head, relaxed_head = self._head(tuple(counts))
        tail = b"bh=" + msg.body_hash(self._body_canon) + b";"
        if self.clock is not None:
            now = int(self.clock())
            stamp = f"t={now}; x={now + self.expire_after}; " if self.expire_after else f"t={now}; "
            tail = stamp.encode() + tail
        unsigned = raw_head + tail + b"\r\n\tb="
        signed.append((relaxed_head + tail + b" b=") if relaxed else unsigned)
        data = _CRLF.join(signed)
        pk = self.key
        if isinstance(pk, rsa.RSAPrivateKey):
            sig = pk.sign(data, _PKCS1, _SHA256)
        else:
            # RFC 8463 section 3: Ed25519 signs the SHA-256 hash of the header data.
            sig = pk.sign(hashlib.sha256(data).digest())
        b64 = base64.b64encode(sig)
        if len(b64) > 72:
            b64 = b"\r\n\t ".join([b64[i : i + 72] for i in range(0, len(b64), 72)])
        return unsigned + b64 + _CRLF


def _fold_h(parts: list[str]) -> str:
    out: list[str] = []
    col = 8
    for part in parts:
        if out and col + len(part) > 76:
            out.append("\r\n\t ")
            col = 9
        out.append(part)
        col += len(part)
    return "".join(out)


def sign_message(message: bytes, signers: Sequence[DKIMSigner]) -> bytes:
    """Sign ``message`` with every signer (e.g. RSA and Ed25519) and prepend the fields.

    The first signer's field ends up on top. Line endings follow the input: LF-only input
    gets LF-terminated fields (its CRLF form is what was signed); mixed input comes back as
    CRLF. No signers: the message is returned unchanged.
    """
    if not signers:
        return bytes(message)
    msg = _Parsed(message)
    fields = b"".join(s._field(msg) for s in signers)
    if msg.sep != _CRLF:
        fields = fields.replace(_CRLF, msg.sep)
    return fields + msg.out
