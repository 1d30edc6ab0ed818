"""Organizational domains and relaxed alignment (RFC 7489 section 3.2), offline.

The Public Suffix List comes bundled with the ``publicsuffixlist`` package, so no download
happens at run time. When a name is not under any known suffix (``localhost``, a bare label),
the name itself is its organizational domain, which degrades to exact-match alignment.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList

__all__ = ["aligned", "host_of", "org_domain"]


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


@lru_cache(maxsize=4096)
def org_domain(domain: str) -> str:
    """``news.mail.example.co.uk`` -> ``example.co.uk``."""
    name = domain.strip().lower().rstrip(".")
    if not name:
        return ""
    try:
        private = _psl().privatesuffix(name)
    except Exception:  # noqa: BLE001 - non-ASCII or otherwise odd labels: treat the name as its own org domain
        private = None
    return private or name


def aligned(a: str, b: str) -> bool:
    """Relaxed alignment: both names share an organizational domain."""
    return bool(a and b) and org_domain(a) == org_domain(b)


def host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        return ""
