"""Email address normalization: done once, at the edge, before anything is stored or sealed."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from .errors import AddressError

__all__ = ["mask", "normalize"]


def normalize(address: str) -> str:
    """Syntax-check and normalize: IDNA (A-label) domain, case-folded local part and domain.

    No provider-specific rewriting (dots and ``+tags`` are kept): ``a.b+x@gmail.com`` and
    ``ab@gmail.com`` are different contact points.
    """
    if not isinstance(address, str) or not address.strip():
        raise AddressError("empty email address")
    try:
        info = validate_email(address.strip(), check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise AddressError(f"invalid email address: {exc}") from None
    domain = info.ascii_domain or info.domain
    return f"{info.local_part.casefold()}@{domain.lower()}"


def mask(address: str) -> str:
    """``jane@example.com`` -> ``j***@example.com`` (for pages and logs)."""
    local, _, domain = address.rpartition("@")
    if not local:
        return "***"
    return f"{local[0]}***@{domain}"
