"""Bounces (pure): the delivery status notification (RFC 3464) for copies refused upstream.

Once the relay answered ``250`` it owns the message (RFC 5321 section 6.1): a copy the
upstream refuses for good is reported to the envelope sender by a DSN, sent with the null
sender ``<>`` so that it can never bounce back in a loop.

The report is written as bytes: the stdlib generator expects ``message/delivery-status``
payloads as lists of header blocks and refolds them; a fixed layout is simpler and exact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid

from .policy import Delivery, clean_text

__all__ = ["build_dsn"]

_HEADER_LIMIT = 64 * 1024


def _original_headers(original: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, _ = original.partition(sep)
        if found:
            break
    lines = head[:_HEADER_LIMIT].replace(b"\r\n", b"\n").split(b"\n")
    return b"".join(line + b"\r\n" for line in lines if line)


def build_dsn(
    original: bytes,
    *,
    sender: str,
    failures: Sequence[Delivery],
    reporting_mta: str,
    now: float,
) -> bytes:
    """A ``multipart/report`` telling ``sender`` which recipients did not get ``original``.

    The report gives the upstream's reply per recipient and carries the original header
    fields (``text/rfc822-headers``), never the body.
    """
    date = format_datetime(datetime.fromtimestamp(now, UTC))
    boundary = "=_dsn_" + hashlib.sha256(original + date.encode()).hexdigest()[:24]
    human = [
        "This is the unsubkit relay. The message could not be delivered to the following",
        "recipient(s): the upstream mail server refused it permanently.",
        "",
        *(f"  <{clean_text(d.recipient)}>: {d.code} {d.reason}" for d in failures),
        "",
        "The other recipients were sent the message.",
    ]
    status = [f"Reporting-MTA: dns; {reporting_mta}", f"Arrival-Date: {date}", ""]
    for d in failures:
        status += [
            f"Final-Recipient: rfc822; {clean_text(d.recipient)}",
            "Action: failed",
            f"Status: {d.status}",
            f"Diagnostic-Code: smtp; {d.code} {d.reason}",
            "",
        ]
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{sender}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {date}",
        f"Message-ID: {make_msgid(domain=reporting_mta)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        *human,
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        *status,
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "Content-Transfer-Encoding: 8bit",
        "",
    ]
    tail = f"\r\n--{boundary}--\r\n"
    return "\r\n".join(head).encode("utf-8") + b"\r\n" + _original_headers(original) + tail.encode()
