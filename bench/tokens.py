"""Tokens: seal + build the headers, and open, against itsdangerous doing the same claims.

The baseline is what a sender would otherwise write: an ``itsdangerous.URLSafeTimedSerializer``
over the same claims (as a dict), put into the same header fields, and ``loads`` with the same
maximum age. Both run in this process, interleaved round by round, and each side's best round
counts (the machine is shared; the best round is the least disturbed one).

Targets: ours >= 10x the baseline on both paths. Exits 1 when a target is missed.

    .venv/bin/python bench/tokens.py [--n 2000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from itsdangerous import URLSafeTimedSerializer

from unsubkit.headers import HeaderTemplate
from unsubkit.tokens import DEFAULT_LIFETIME, Claims, KeyRing, TokenCodec, new_key

TARGET = 10.0
BASE_URL = "https://unsub.example.com"
MAILTO = "unsubscribe@example.com"


#: What :meth:`unsubkit.service.Unsubkit.headers_for` holds per brand (built once, validated).
TEMPLATE = HeaderTemplate(BASE_URL, MAILTO, one_click=True)


def build_headers(token: str) -> dict[str, str]:
    """Exactly the calls :meth:`unsubkit.service.Unsubkit.headers_for` makes for a sealed token
    (itsdangerous tokens are base64url and dots: the same template serves both sides)."""
    headers = TEMPLATE.headers(token)
    assert headers is not None
    return headers.as_dict()


def make_claims(n: int, now: int) -> list[Claims]:
    # Typical: an address of ~25 characters, a Message-ID of ~40, a purpose and (mostly) a topic.
    return [
        Claims(
            address=f"subscriber{i:05d}@example.com",
            purpose_id=3,
            topic_id=12 if i % 4 else None,
            message_id=f"<{i:08d}.{os.urandom(6).hex()}@mail.example.com>",
            issued_at=now,
        )
        for i in range(n)
    ]


def as_dict(c: Claims) -> dict[str, Any]:
    return {
        "address": c.address,
        "purpose_id": c.purpose_id,
        "brand": c.brand,
        "topic_id": c.topic_id,
        "level": int(c.level),
        "contact_id": c.contact_id,
        "message_id": c.message_id,
    }


def per_op(fn: Callable[[], object], n: int) -> float:
    gc.disable()
    try:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) / n
    finally:
        gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="tokens per round")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)

    now = int(time.time())
    codec = TokenCodec(KeyRing([new_key(now)]))
    its = URLSafeTimedSerializer(os.urandom(32), salt="unsubscribe")
    claims = make_claims(args.n, now)
    dicts = [as_dict(c) for c in claims]

    ours_tokens = [codec.seal(c) for c in claims]
    its_tokens = [its.dumps(d) for d in dicts]
    # Same answers before timing anything.
    assert [codec.open(t) for t in ours_tokens[:50]] == claims[:50]
    assert [its.loads(t, max_age=DEFAULT_LIFETIME) for t in its_tokens[:50]] == dicts[:50]

    def ours_seal() -> None:
        for c in claims:
            build_headers(codec.seal(c))

    def its_seal() -> None:
        for d in dicts:
            build_headers(its.dumps(d))

    def ours_open() -> None:
        for t in ours_tokens:
            codec.open(t)

    def its_open() -> None:
        for t in its_tokens:
            its.loads(t, max_age=DEFAULT_LIFETIME)

    cases = {"ours_seal": ours_seal, "its_seal": its_seal, "ours_open": ours_open, "its_open": its_open}
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(args.rounds):
        for name, fn in cases.items():
            best[name] = min(best[name], per_op(fn, args.n))

    seal_ratio = best["its_seal"] / best["ours_seal"]
    open_ratio = best["its_open"] / best["ours_open"]
    avg_len = sum(map(len, ours_tokens)) / len(ours_tokens)
    its_len = sum(map(len, its_tokens)) / len(its_tokens)

    print(f"tokens: {args.n} typical claim sets x {args.rounds} rounds (best round per case)")
    print(f"{'path':<26}{'unsubkit':>14}{'itsdangerous':>16}{'ratio':>9}")
    for label, ours, theirs, ratio in (
        ("seal + build headers", best["ours_seal"], best["its_seal"], seal_ratio),
        ("open (+ expiry check)", best["ours_open"], best["its_open"], open_ratio),
    ):
        print(f"{label:<26}{ours * 1e6:>9.2f} us/op{theirs * 1e6:>11.2f} us/op{ratio:>8.1f}x")
        print(f"{'':<26}{1 / ours:>10,.0f} /s{1 / theirs:>12,.0f} /s")
    print(f"token length: unsubkit {avg_len:.0f} chars (opaque), itsdangerous {its_len:.0f} chars (readable)")

    missed = [name for name, r in (("seal", seal_ratio), ("open", open_ratio)) if r < TARGET]
    if missed:
        print(f"FAIL: below {TARGET:.0f}x on {', '.join(missed)}")
        return 1
    print(f"OK: >= {TARGET:.0f}x on both")
    return 0


if __name__ == "__main__":
    sys.exit(main())
