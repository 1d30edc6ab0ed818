"""DKIM-Signature fields as the checker sees them: tags parsed leniently, verified with dkimpy.

dkimpy is the independent verifier (our own signer lives in :mod:`unsubkit.dkim`); keys come
from an injected :data:`~unsubkit.audit.keys.KeyLookup`, so nothing here touches the network.
dkimpy checks ``x=`` (expiry) against the system clock; that is the only clock read, and it is
the receiver's view anyway.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from enum import StrEnum

import dkim

from ..errors import DKIMError
from .keys import KeyLookup, key_name

__all__ = ["Signature", "Verification", "VerifyStatus", "parse_signature", "verify_signature"]

REQUIRED_TAGS = ("v", "a", "b", "bh", "d", "h", "s")

_silent = logging.getLogger("unsubkit.audit.dkimpy")
_silent.addHandler(logging.NullHandler())
_silent.propagate = False


@dataclass(frozen=True, slots=True)
class Signature:
    index: int
    tags: tuple[tuple[str, str], ...]
    #: Why the signature cannot be used at all (a required tag missing), else ``None``.
    problem: str | None

    def tag(self, name: str) -> str:
        return dict(self.tags).get(name, "")

    @property
    def domain(self) -> str:
        return self.tag("d").lower().rstrip(".")

    @property
    def selector(self) -> str:
        return self.tag("s")

    @property
    def algorithm(self) -> str:
        return self.tag("a")

    @property
    def signed_fields(self) -> list[str]:
        """``h=`` names, lower-case, in order, duplicates kept (they are the oversigning)."""
        return [n.strip().lower() for n in self.tag("h").split(":") if n.strip()]

    def signs(self, name: str) -> int:
        return self.signed_fields.count(name.lower())

    @property
    def label(self) -> str:
        return f"d={self.domain or '?'} s={self.selector or '?'}"


class VerifyStatus(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    NO_KEY = "no-key"
    LOOKUP_ERROR = "lookup-error"


@dataclass(frozen=True, slots=True)
class Verification:
    status: VerifyStatus
    detail: str = ""


def parse_signature(index: int, value: str) -> Signature:
    """Parse ``tag=value; ...`` leniently (RFC 6376 section 3.2). Never raises."""
    tags: list[tuple[str, str]] = []
    seen: set[str] = set()
    problems: list[str] = []
    for part in value.split(";"):
        if not part.strip():
            continue
        name, eq, val = part.partition("=")
        name = name.strip()
        if not eq or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            problems.append(f"malformed tag {part.strip()[:30]!r}")
            continue
        val = re.sub(r"\s+", "", val) if name in ("b", "bh", "h") else " ".join(val.split())
        if name in seen:
            problems.append(f"tag {name}= appears twice")
            continue
        seen.add(name)
        tags.append((name, val))
    missing = [t for t in REQUIRED_TAGS if t not in seen]
    if missing:
        problems.insert(0, "missing " + ", ".join(f"{t}=" for t in missing))
    return Signature(index, tuple(tags), "; ".join(problems) or None)


def _dkimpy_index(d: dkim.DKIM, sig: Signature) -> int | None:
    """dkimpy numbers signatures in its own header parse; match ours by the b= value."""
    want = sig.tag("b")
    sigs = [v for k, v in d.headers if k.lower() == b"dkim-signature"]
    for i, value in enumerate(sigs):
        m = re.search(rb"(?:^|;)\s*b\s*=([^;]*)", value)
        if m and re.sub(rb"\s+", b"", m.group(1)).decode("ascii", "replace") == want:
            return i
    return None


def verify_signature(raw: bytes, sig: Signature, lookup: KeyLookup) -> Verification:
    """Fetch the key through ``lookup`` and verify ``sig`` over ``raw``. Never raises."""
    name = key_name(sig.selector, sig.domain)
    try:
        record = lookup(name)
    except DKIMError as exc:
        return Verification(VerifyStatus.LOOKUP_ERROR, str(exc))
    if not record:
        return Verification(VerifyStatus.NO_KEY, f"no DKIM key record at {name}")
    try:
        dkim.evaluate_pk(name.encode(), record.encode("utf-8", "replace"))
    except dkim.DKIMException as exc:
        return Verification(VerifyStatus.FAIL, f"key record at {name} is unusable: {exc}")
    except Exception as exc:  # noqa: BLE001 - dkimpy's key parser raises assorted errors on junk records
        return Verification(VerifyStatus.FAIL, f"key record at {name} is unusable ({type(exc).__name__})")

    def dnsfunc(_name: bytes, timeout: int = 5) -> bytes:
        return record.encode("utf-8", "replace")

    try:
        d = dkim.DKIM(raw, logger=_silent, minkey=1024)
        idx = _dkimpy_index(d, sig)
        if idx is None:
            return Verification(VerifyStatus.FAIL, "the verifier could not locate this signature")
        ok = d.verify(idx=idx, dnsfunc=dnsfunc)
    except dkim.DKIMException as exc:
        return Verification(VerifyStatus.FAIL, str(exc)[:200])
    except Exception as exc:  # noqa: BLE001 - dkimpy on malformed input: a failed check, not a crash
        return Verification(VerifyStatus.FAIL, f"could not verify ({type(exc).__name__})")
    if ok:
        return Verification(VerifyStatus.PASS)
    return Verification(
        VerifyStatus.FAIL, "signature does not match: the signed fields or body changed after signing"
    )
