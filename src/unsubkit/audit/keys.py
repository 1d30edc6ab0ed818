"""Where the checker gets DKIM public keys: given offline, or looked up in DNS (an adapter).

A :data:`KeyLookup` takes ``selector._domainkey.domain`` and returns the TXT record text
(``v=DKIM1; k=rsa; p=...``), ``None`` when there is no such record, or raises
:class:`~unsubkit.errors.DKIMError` when the lookup itself failed (timeout, no server). The
checker turns each outcome into a finding; it never talks to the network itself.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ..errors import DKIMError

__all__ = ["KeyLookup", "StaticKeys", "dns_lookup", "key_name", "key_record_from_bytes"]

KeyLookup = Callable[[str], str | None]


def key_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}".lower().rstrip(".")


class StaticKeys:
    """Keys given offline: ``{"sel._domainkey.example.com": "v=DKIM1; k=rsa; p=..."}``."""

    def __init__(self, records: Mapping[str, str]) -> None:
        self._records = {k.lower().rstrip("."): v for k, v in records.items()}

    def __call__(self, name: str) -> str | None:
        return self._records.get(name.lower().rstrip("."))

    def __len__(self) -> int:
        return len(self._records)


def _record_for_public_key(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    raise DKIMError("only RSA and Ed25519 keys can be DKIM keys")


def key_record_from_bytes(data: bytes) -> str:
    """The TXT record for a key file: a PEM public key, a PEM private key (its public half is
    used), a zone-file line with quoted strings, or the bare record text."""
    text = data.decode("utf-8", errors="replace").strip()
    if "-----BEGIN" in text:
        try:
            if "PRIVATE KEY" in text:
                private = serialization.load_pem_private_key(data, password=None)
                return _record_for_public_key(private.public_key())
            return _record_for_public_key(serialization.load_pem_public_key(data))
        except (ValueError, TypeError) as exc:
            raise DKIMError(f"cannot read the PEM key ({type(exc).__name__})") from None
    quoted = re.findall(r'"((?:[^"\\]|\\.)*)"', text)
    if quoted:
        # Zone-file form: sel._domainkey IN TXT ( "v=DKIM1; k=rsa; " "p=MIIB..." )
        text = "".join(quoted)
    if "p=" not in text:
        raise DKIMError("not a DKIM key record (no p= tag)")
    return " ".join(text.split())


def dns_lookup(
    timeout: float = 5.0,
    *,
    nameservers: Sequence[str] | None = None,
    port: int = 53,
) -> KeyLookup:
    """A :data:`KeyLookup` that asks DNS (dnspython), each lookup bounded by ``timeout`` seconds.

    ``nameservers``/``port`` default to the system's resolver configuration.
    """
    import dns.exception
    import dns.resolver

    if nameservers is None:
        try:
            resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            raise DKIMError("no DNS resolver is configured on this machine") from None
    else:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = list(nameservers)
        resolver.port = port
    resolver.lifetime = timeout
    resolver.timeout = timeout

    def lookup(name: str) -> str | None:
        try:
            answer = resolver.resolve(name.rstrip(".") + ".", "TXT", raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.Timeout:
            raise DKIMError(f"DNS lookup of {name} timed out after {timeout:g}s") from None
        except dns.exception.DNSException as exc:
            raise DKIMError(f"DNS lookup of {name} failed ({type(exc).__name__})") from None
        records = [
            b"".join(rdata.strings).decode("utf-8", errors="replace")
            for rdata in (answer.rrset or [])
        ]
        for record in records:
            if "p=" in record:
                return record
        return records[0] if records else None

    return lookup
