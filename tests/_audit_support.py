"""Helpers for the checker tests: fixture messages, test DKIM keys, signing with dkimpy."""

from __future__ import annotations

import base64
import functools
from collections.abc import Sequence
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from unsubkit.audit import StaticKeys
from unsubkit.audit.message import parse_message

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "messages"
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "real-newsletters"

SIGNED = ("from", "to", "subject", "date", "message-id", "mime-version", "content-type",
          "list-unsubscribe", "list-unsubscribe-post")


def fixture(name: str) -> bytes:
    """A fixture message with CRLF line ends, as it would travel."""
    raw = (FIXTURES / name).read_bytes()
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@functools.cache
def rsa_key(n: int = 0) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def rsa_record(key: rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def ed_record(key: ed25519.Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode()


def keys_for(*entries: tuple[str, str, str]) -> StaticKeys:
    """``(selector, domain, record)`` triples -> an offline key lookup."""
    return StaticKeys({f"{s}._domainkey.{d}": r for s, d, r in entries})


def sign(
    raw: bytes,
    *,
    domain: str = "example.com",
    selector: str = "sel",
    fields: Sequence[str] | None = SIGNED,
    oversign: bool = True,
    key: rsa.RSAPrivateKey | None = None,
    ed25519_key: ed25519.Ed25519PrivateKey | None = None,
) -> bytes:
    """Prepend a dkimpy signature. ``fields=None`` uses dkimpy's default h= (no Post field)."""
    include: list[bytes] | None = None
    if fields is not None:
        msg = parse_message(raw)
        include = []
        for name in fields:
            count = msg.count(name) + (1 if oversign else 0)
            include += [name.encode()] * max(count, 1)
    if ed25519_key is not None:
        seed = ed25519_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                         serialization.NoEncryption())
        sig = dkim.sign(raw, selector.encode(), domain.encode(), base64.b64encode(seed),
                        canonicalize=(b"relaxed", b"relaxed"), signature_algorithm=b"ed25519-sha256",
                        include_headers=include)
    else:
        pem = (key or rsa_key()).private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.TraditionalOpenSSL,
                                               serialization.NoEncryption())
        sig = dkim.sign(raw, selector.encode(), domain.encode(), pem,
                        canonicalize=(b"relaxed", b"relaxed"), include_headers=include)
    return sig + raw
