"""Checker throughput: ``check_message`` over the 26 real newsletters, against the stdlib
parsing the same messages (``email.message_from_bytes`` with ``policy.default`` and decoding
every text part), measured in the same run. Also the cost of verifying a DKIM signature with
an offline key (dkimpy, RSA-2048) on a signed 5 kB message.

    .venv/bin/python bench/check.py [--seconds 3]

Target: the full rule pipeline within about 3x the stdlib's bare parse of the same mail (ratio >= 0.3).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/dkim.py would shadow dkimpy's ``dkim`` package for scripts run from this folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import base64  # noqa: E402
import email  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from email import policy  # noqa: E402

import dkim  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from unsubkit.audit import CheckOptions, StaticKeys, check_message  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "real-newsletters"
FIXTURE = ROOT / "tests" / "fixtures" / "messages" / "compliant.eml"
TARGET = 0.3


def rate(fn: Callable[[], object], items: int, seconds: float) -> float:
    fn()  # warm-up (caches, imports)
    n = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += items
    return n / elapsed


def stdlib_parse(messages: list[bytes]) -> None:
    for raw in messages:
        msg = email.message_from_bytes(raw, policy=policy.default)
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                part.get_content()  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    messages = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]
    size = sum(map(len, messages)) / len(messages)

    base = rate(lambda: stdlib_parse(messages), len(messages), args.seconds)
    ours = rate(lambda: [check_message(m) for m in messages], len(messages), args.seconds)

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    raw = FIXTURE.read_bytes().replace(b"\n", b"\r\n")
    raw = raw + b"\r\n" + b"padding text for a message of about five kilobytes.\r\n" * 70
    fields = [b"from", b"to", b"subject", b"date", b"message-id", b"list-unsubscribe", b"list-unsubscribe",
              b"list-unsubscribe-post", b"list-unsubscribe-post"]
    signed = dkim.sign(raw, b"sel", b"example.com", pem, include_headers=fields) + raw
    keys = StaticKeys({"sel._domainkey.example.com": "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()})
    options = CheckOptions(keys=keys)
    assert check_message(signed, options).codes == [], check_message(signed, options).codes
    unverified = rate(lambda: check_message(signed), 1, args.seconds)
    verified = rate(lambda: check_message(signed, options), 1, args.seconds)

    ratio = ours / base
    print(f"corpus: {len(messages)} real newsletters, {size / 1024:.0f} kB on average")
    print(f"stdlib parse (policy.default, text parts decoded): {base:8.0f} messages/s")
    print(f"check_message, all rules, no DKIM keys:            {ours:8.0f} messages/s  ratio {ratio:.2f}")
    print(f"signed {len(signed) / 1024:.1f} kB message, keys offline: {verified:8.0f} messages/s "
          f"(without verification {unverified:.0f}/s)")
    print(f"target ratio >= {TARGET}: {'met' if ratio >= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
