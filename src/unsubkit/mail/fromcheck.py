"""The From-address fallback: who sent a message to the bare unsubscribe address?

A ``From:`` line proves nothing (anyone can write anyone's address there), so the fallback
trusts it only when a DKIM signature on the message verifies, covers ``From``, and its ``d=``
is aligned with the From domain (relaxed alignment, as DMARC). Otherwise the message is
refused.

DNS is injected: :data:`TxtLookup` is any ``(name, timeout) -> bytes | None``.
:class:`DnsTxt` asks the system resolver (or given nameservers); :class:`TxtFile` answers from a file of
``name "TXT value"`` lines (tests, air-gapped setups). A lookup that cannot be answered now
raises :class:`TimeoutError`, and the check fails *temporarily* (the MTA retries).
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Callable, Sequence
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import dkim
from dkim.util import parse_tag_value

from ..address import normalize
from ..audit.domains import aligned
from ..errors import AddressError, ConfigError, SenderNotVerified
from .mailto import header_block

__all__ = ["DnsTxt", "FromChecker", "TxtFile", "TxtLookup", "txt_lookup_for"]

log = logging.getLogger("unsubkit.mail")

#: ``(name, timeout) -> TXT data``; ``None`` when the name has no TXT record; raises
#: :class:`TimeoutError` when no answer can be had right now.
TxtLookup = Callable[[str, float], bytes | None]

#: Signatures checked per message at most (each may cost a DNS lookup).
MAX_SIGNATURES = 5


class DnsTxt:
    """TXT lookups through dnspython: the system resolver, or the given nameservers."""

    def __init__(self, nameservers: Sequence[str] | None = None, *, port: int = 53) -> None:
        self.nameservers = list(nameservers) if nameservers else None
        self.port = port
        self._resolver: Any = None

    def _get_resolver(self) -> Any:
        import dns.resolver

        if self._resolver is None:
            resolver = dns.resolver.Resolver(configure=self.nameservers is None)
            if self.nameservers is not None:
                resolver.nameservers = self.nameservers
                resolver.port = self.port
            self._resolver = resolver
        return self._resolver

    def __call__(self, name: str, timeout: float) -> bytes | None:
        import dns.exception
        import dns.resolver

        try:
            answer = self._get_resolver().resolve(name, "TXT", lifetime=timeout,
                                                  raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return None
        except (dns.exception.Timeout, dns.resolver.NoNameservers,
                dns.resolver.NoResolverConfiguration) as exc:
            raise TimeoutError(f"DNS lookup failed: {type(exc).__name__}") from exc
        except dns.exception.DNSException:
            return None
        if answer.rrset is None:
            return None
        for rdata in answer.rrset:
            return b"".join(rdata.strings)
        return None


class TxtFile:
    """TXT answers from a file: one record a line, ``name "value" ["more"...]`` (zone-file
    style ``name IN TXT "value"`` works too); ``#`` starts a comment line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: dict[str, bytes] = {}
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read DNS file {path}: {exc.strerror}") from None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                parts = shlex.split(line, posix=True)
            except ValueError:
                raise ConfigError(f"{path}:{n}: unbalanced quotes") from None
            if len(parts) < 2:
                raise ConfigError(f"{path}:{n}: expected a name and a TXT value")
            name, rest = parts[0], parts[1:]
            while rest and rest[0].upper() in ("IN", "TXT") and len(rest) > 1:
                rest = rest[1:]
            self._records[_key(name)] = "".join(rest).encode()

    def __call__(self, name: str, timeout: float) -> bytes | None:
        return self._records.get(_key(name))


def _key(name: str) -> str:
    return name.strip().lower().rstrip(".")


def txt_lookup_for(dns_file: Path | None) -> TxtLookup:
    """The lookup the settings ask for: the file when one is named, else real DNS."""
    return TxtFile(dns_file) if dns_file is not None else DnsTxt()


def _from_address(message: bytes) -> str:
    try:
        msg = BytesHeaderParser(policy=compat32).parsebytes(header_block(message))
        values = [str(v) for v in msg.get_all("From") or []]
    except Exception:  # noqa: BLE001 - hostile header blocks
        values = []
    if len(values) != 1:
        raise SenderNotVerified("message must have exactly one From field")
    addresses = [a for _, a in getaddresses(values) if a]
    if len(addresses) != 1:
        raise SenderNotVerified("From must name exactly one address")
    try:
        return normalize(addresses[0])
    except AddressError:
        raise SenderNotVerified("From address is not valid") from None


_WSP = re.compile(rb"\s+")


class FromChecker:
    """Verifies that a message's From address is proven by an aligned DKIM signature."""

    def __init__(self, lookup: TxtLookup, *, timeout: float = 5.0, minkey: int = 1024) -> None:
        self.lookup = lookup
        self.timeout = timeout
        self.minkey = minkey

    def verify(self, message: bytes) -> str:
        """The proven (normalized) From address; :class:`SenderNotVerified` otherwise."""
        address = _from_address(message)
        from_domain = address.rpartition("@")[2]
        try:
            verifier = dkim.DKIM(message, minkey=self.minkey, timeout=self.timeout)
        except dkim.DKIMException:
            raise SenderNotVerified("message cannot be parsed for DKIM") from None
        signatures = [v for k, v in verifier.headers if k.lower() == b"dkim-signature"]
        if not signatures:
            raise SenderNotVerified("message has no DKIM signature")
        temporary = False

        def dnsfunc(name: bytes, timeout: float = self.timeout, **_: Any) -> bytes | None:
            nonlocal temporary
            try:
                return self.lookup(name.decode("ascii", "replace"), min(timeout, self.timeout))
            except (TimeoutError, OSError) as exc:
                temporary = True
                raise dkim.DnsTimeoutError(str(exc)) from exc

        for idx, value in enumerate(signatures[:MAX_SIGNATURES]):
            try:
                tags = parse_tag_value(_WSP.sub(b"", value))
                d = tags.get(b"d", b"").decode("ascii").lower()
                signed = {h.strip().lower() for h in tags.get(b"h", b"").split(b":")}
            except Exception:  # noqa: BLE001 - a malformed signature is just not a proof
                log.info("mailto fallback: skipping a malformed DKIM-Signature field")
                continue
            # RFC 6376 5.4: From must be signed; DMARC-style alignment with the From domain.
            if b"from" not in signed or not aligned(d, from_domain):
                continue
            try:
                if verifier.verify(idx=idx, dnsfunc=dnsfunc):
                    return address
            except dkim.DKIMException as exc:
                log.info("mailto fallback: DKIM signature d=%s does not verify: %s", d,
                         type(exc).__name__)
        if temporary:
            raise SenderNotVerified("DKIM key lookup failed, try again later", temporary=True)
        raise SenderNotVerified("no DKIM signature aligned with From verifies")
