"""Which copies of a deferred message already went out (pure; clock injected).

When the relay answers ``451`` after some copies were forwarded, the app keeps the message and
sends it again later, to every recipient. The ledger remembers the forwarded ones under a
digest of the transaction (sender and exact bytes), so the retry sends only the copies still
missing: nothing accepted is lost and nobody gets the message twice.

It lives in memory: a relay restarted between the ``451`` and the retry sends those copies
again (at least once, never lost). Entries exist only for deferred transactions, expire after
``ttl`` seconds (match the app's or MTA's queue lifetime) and are bounded in number.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable

from ..clock import Clock, system_clock

__all__ = ["RetryLedger", "transaction_key"]


def transaction_key(mail_from: str, data: bytes) -> str:
    """Same sender and same bytes: the same message, sent again."""
    h = hashlib.sha256()
    h.update(mail_from.encode("utf-8", "surrogateescape"))
    h.update(b"\0")
    h.update(data)
    return h.hexdigest()


class RetryLedger:
    def __init__(self, *, ttl: float, clock: Clock = system_clock, max_entries: int = 100_000) -> None:
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, frozenset[str]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _expire(self, now: float) -> None:
        while self._entries:
            key, (at, _) = next(iter(self._entries.items()))
            if now - at < self.ttl and len(self._entries) <= self.max_entries:
                break
            del self._entries[key]

    def sent(self, key: str) -> frozenset[str]:
        """Recipients (lower-cased) a deferred attempt at this transaction already served."""
        now = self.clock()
        self._expire(now)
        entry = self._entries.get(key)
        return entry[1] if entry else frozenset()

    def remember(self, key: str, recipients: Iterable[str]) -> None:
        """Add forwarded recipients; the entry's lifetime restarts."""
        now = self.clock()
        known = self._entries.pop(key, (now, frozenset()))[1]
        merged = known | {r.lower() for r in recipients}
        if merged:
            self._entries[key] = (now, merged)
        self._expire(now)

    def forget(self, key: str) -> None:
        """The transaction completed: its retries are over."""
        self._entries.pop(key, None)
