"""DKIM signing keys on disk (an adapter: file IO only; the signing itself is :mod:`.dkim`).

Layout, under ``settings.dkim_dir`` (``<data_dir>/dkim``, mode 0700)::

    <name>.pem    the private key, PKCS#8 PEM, mode 0600 (never printed, never logged)
    <name>.json   {"domain": ..., "selector": ..., "algorithm": ..., "created_at": ...}

A brand lists key names in ``dkim_keys``; each name signs under its own ``d=``/``s=`` (two
names, e.g. an RSA and an Ed25519 key, give two signatures). A ``.pem`` dropped in without a
sidecar works when its name spells the DNS name, ``<selector>._domainkey.<domain>``, which is
also the name ``unsubkit dkim keygen`` picks by default.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from .clock import Clock
from .dkim import MIN_RSA_BITS, DKIMSigner, PrivateKey, load_private_key, txt_record
from .errors import DKIMError
from .keystore import write_private
from .settings import Brand, Settings

__all__ = [
    "KeyInfo",
    "create_key",
    "default_name",
    "generate_key",
    "list_keys",
    "load_key",
    "load_signer",
    "signers_for_brand",
    "txt_strings",
    "zone_record",
]

Algorithm = Literal["rsa", "ed25519"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_DOMAINKEY = "._domainkey."
_TXT_CHUNK = 255


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """Public facts about one stored key (nothing secret)."""

    name: str
    domain: str
    selector: str
    algorithm: Algorithm
    created_at: float | None
    txt: str

    @property
    def dns_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "domain": self.domain,
            "selector": self.selector,
            "algorithm": self.algorithm,
            "created_at": self.created_at,
            "dns_name": self.dns_name,
            "txt": self.txt,
            "txt_strings": txt_strings(self.txt),
        }


# -- DNS record text -----------------------------------------------------------------------


def txt_strings(record: str) -> list[str]:
    """``record`` split into the <= 255-octet character-strings a TXT RDATA is made of."""
    return [record[i : i + _TXT_CHUNK] for i in range(0, len(record), _TXT_CHUNK)] or [""]


def zone_record(info: KeyInfo, ttl: int | None = None) -> str:
    """A zone-file line: ``s._domainkey.example.com. [TTL] IN TXT ( "..." "..." )``."""
    strings = " ".join(f'"{s}"' for s in txt_strings(info.txt))
    ttl_part = f"{ttl} " if ttl is not None else ""
    return f"{info.dns_name}. {ttl_part}IN TXT ( {strings} )"


# -- names and keys ------------------------------------------------------------------------


def default_name(domain: str, selector: str) -> str:
    return f"{selector}{_DOMAINKEY}{domain.lower().rstrip('.')}"


def _check_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise DKIMError(f"invalid DKIM key name {name!r} (letters, digits, '.', '_', '-')")
    return name


def generate_key(algorithm: Algorithm = "rsa", bits: int = 2048) -> PrivateKey:
    if algorithm == "rsa":
        if bits < MIN_RSA_BITS or bits > 8192:
            raise DKIMError(f"RSA DKIM keys need {MIN_RSA_BITS} to 8192 bits, got {bits}")
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise DKIMError(f"unknown DKIM algorithm {algorithm!r}: use rsa or ed25519")


def _algorithm(key: PrivateKey) -> Algorithm:
    return "rsa" if isinstance(key, rsa.RSAPrivateKey) else "ed25519"


def _ensure_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)
    except OSError as exc:
        raise DKIMError(f"cannot create DKIM key directory {path}: {exc.strerror}") from None


def create_key(
    dkim_dir: Path,
    *,
    domain: str,
    selector: str,
    algorithm: Algorithm = "rsa",
    bits: int = 2048,
    name: str | None = None,
    now: float | None = None,
    overwrite: bool = False,
) -> KeyInfo:
    """Generate a key, store it (0600) with its sidecar, return its public facts."""
    key = generate_key(algorithm, bits)
    # Validates domain and selector the way signing will, before anything is written.
    signer = DKIMSigner(key, domain=domain, selector=selector)
    name = _check_name(name or default_name(signer.domain, signer.selector))
    _ensure_dir(dkim_dir)
    pem_path = dkim_dir / f"{name}.pem"
    if pem_path.exists() and not overwrite:
        raise DKIMError(f"DKIM key {name!r} already exists in {dkim_dir}; pick another --name")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    meta = {
        "domain": signer.domain,
        "selector": signer.selector,
        "algorithm": algorithm,
        "created_at": now,
    }
    try:
        write_private(pem_path, pem)
        (dkim_dir / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    except OSError as exc:
        raise DKIMError(f"cannot write DKIM key {name!r}: {exc.strerror}") from None
    return KeyInfo(name, signer.domain, signer.selector, algorithm, now, txt_record(key))


def _meta(dkim_dir: Path, name: str) -> dict[str, Any]:
    path = dkim_dir / f"{name}.json"
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError("not an object")
        return raw
    except FileNotFoundError:
        selector, sep, domain = name.partition(_DOMAINKEY)
        if sep and selector and domain:
            return {"domain": domain, "selector": selector}
        raise DKIMError(
            f"DKIM key {name!r} has no {path.name} naming its domain and selector "
            f"(or name the key file <selector>._domainkey.<domain>.pem)"
        ) from None
    except (OSError, ValueError) as exc:
        raise DKIMError(f"cannot read {path}: {exc}") from None


def load_key(dkim_dir: Path, name: str) -> tuple[KeyInfo, PrivateKey]:
    """The stored key ``name`` and its facts, or a DKIMError that says what to do."""
    _check_name(name)
    pem_path = dkim_dir / f"{name}.pem"
    try:
        pem = pem_path.read_bytes()
    except FileNotFoundError:
        raise DKIMError(
            f"DKIM key {name!r} not found in {dkim_dir}: run `unsubkit dkim keygen`"
        ) from None
    except OSError as exc:
        raise DKIMError(f"cannot read DKIM key {name!r}: {exc.strerror}") from None
    key = load_private_key(pem)
    meta = _meta(dkim_dir, name)
    try:
        domain, selector = str(meta["domain"]), str(meta["selector"])
        created = meta.get("created_at")
        created_at = float(created) if created is not None else None
    except (KeyError, TypeError, ValueError):
        raise DKIMError(f"{name}.json must name a domain and a selector") from None
    info = KeyInfo(name, domain, selector, _algorithm(key), created_at, txt_record(key))
    return info, key


def load_signer(
    dkim_dir: Path, name: str, *, clock: Clock | None = None, **options: Any
) -> DKIMSigner:
    """A signer for stored key ``name`` (``options`` go to :class:`DKIMSigner`)."""
    info, key = load_key(dkim_dir, name)
    return DKIMSigner(key, domain=info.domain, selector=info.selector, clock=clock, **options)


def signers_for_brand(
    settings: Settings, brand: str | Brand | None = None, *, clock: Clock | None = None
) -> list[DKIMSigner]:
    """Signers for every key the brand names (none configured: an empty list, no signing)."""
    b = brand if isinstance(brand, Brand) else settings.brand(brand)
    return [load_signer(settings.dkim_dir, name, clock=clock) for name in b.dkim_keys]


def list_keys(dkim_dir: Path) -> list[KeyInfo]:
    """Facts about every stored key, by name."""
    if not dkim_dir.is_dir():
        return []
    return [load_key(dkim_dir, p.stem)[0] for p in sorted(dkim_dir.glob("*.pem"))]
