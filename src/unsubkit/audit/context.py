"""What every rule gets: the parsed message, the caller's options, and shared analyses.

Analyses several rules need (the tokenized List-Unsubscribe, the DKIM signatures and their
verification, the classification) are computed once, lazily, here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from ..clock import Clock, system_clock
from ..headers import LIST_UNSUBSCRIBE, LIST_UNSUBSCRIBE_POST
from ..tokens import Claims
from .classify import Classification, classify
from .dkimsig import Signature, Verification, parse_signature, verify_signature
from .keys import KeyLookup
from .listunsub import ParsedField, UriItem, tokenize
from .message import ParsedMessage

__all__ = ["CheckContext", "CheckOptions", "OwnTokens", "TokenOpener"]


class TokenOpener(Protocol):
    """What the checker needs of a :class:`~unsubkit.tokens.TokenCodec`."""

    def open(self, token: str, *, check_expiry: bool = True) -> Claims: ...

    def lifetime_of(self, brand: str) -> int: ...


@dataclass(frozen=True, slots=True)
class OwnTokens:
    """How to recognize and open unsubkit's own tokens (from a local configuration)."""

    opener: TokenOpener
    #: Public bases of our one-click URLs (``https://unsub.example.com``), one per brand.
    base_urls: tuple[str, ...]
    #: Our unsubscribe addresses (``unsubscribe@example.com``); tokens ride as ``+TOKEN``.
    mailto_addresses: tuple[str, ...] = ()
    purpose_name: Callable[[int], str | None] | None = None
    topic_name: Callable[[int], str | None] | None = None


@dataclass(frozen=True, slots=True)
class CheckOptions:
    #: Where DKIM keys come from; ``None``: signatures are inspected but not verified.
    keys: KeyLookup | None = None
    tokens: OwnTokens | None = None
    clock: Clock = system_clock


class CheckContext:
    def __init__(self, msg: ParsedMessage, options: CheckOptions | None = None) -> None:
        self.msg = msg
        self.options = options or CheckOptions()

    # -- unsubscribe fields ----------------------------------------------------------------

    @cached_property
    def list_unsubscribe(self) -> ParsedField | None:
        """The first List-Unsubscribe field, tokenized (repeats are reported by presence)."""
        f = self.msg.first(LIST_UNSUBSCRIBE)
        return tokenize(f.raw_value) if f else None

    @property
    def has_list_unsubscribe(self) -> bool:
        return self.msg.count(LIST_UNSUBSCRIBE) > 0

    @property
    def has_post(self) -> bool:
        return self.msg.count(LIST_UNSUBSCRIBE_POST) > 0

    @cached_property
    def items(self) -> list[UriItem]:
        return list(self.list_unsubscribe.items) if self.list_unsubscribe else []

    @cached_property
    def https_urls(self) -> list[str]:
        return [i.uri for i in self.items if i.scheme == "https"]

    @cached_property
    def web_urls(self) -> list[str]:
        return [i.uri for i in self.items if i.scheme in ("https", "http")]

    @cached_property
    def mailto_uris(self) -> list[str]:
        return [i.uri for i in self.items if i.scheme == "mailto"]

    # -- DKIM ------------------------------------------------------------------------------

    @cached_property
    def signatures(self) -> list[Signature]:
        return [parse_signature(i, f.value) for i, f in enumerate(self.msg.get_all("DKIM-Signature"))]

    @cached_property
    def usable_signatures(self) -> list[Signature]:
        return [s for s in self.signatures if s.problem is None]

    @cached_property
    def verifications(self) -> dict[int, Verification]:
        """Signature index -> outcome; empty when no key source was given."""
        lookup = self.options.keys
        if lookup is None:
            return {}
        return {s.index: verify_signature(self.msg.raw, s, lookup) for s in self.usable_signatures}

    # -- content ---------------------------------------------------------------------------

    @cached_property
    def classification(self) -> Classification:
        return classify(self.msg)

    @property
    def now(self) -> float:
        return self.options.clock()
