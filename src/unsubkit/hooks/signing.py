"""Standard Webhooks signing (https://www.standardwebhooks.com) through ``standardwebhooks``.

Each request carries ``webhook-id`` (stable per event and endpoint), ``webhook-timestamp``
(seconds, per attempt) and ``webhook-signature`` (``v1,<base64 HMAC-SHA256>`` of
``id.timestamp.body``). While a rotated secret is in its grace time, both signatures are sent,
space-separated, so receivers can switch secrets without losing a message.
"""

from __future__ import annotations

import base64
import secrets as _secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from ..errors import WebhookError

__all__ = ["SECRET_PREFIX", "new_secret", "sign_headers"]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format prefix, not a secret
#: 32 random bytes (the specification asks for 24 to 64).
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def sign_headers(secrets: Sequence[str], msg_id: str, timestamp: float, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` (the exact text sent)."""
    if not secrets:
        raise WebhookError("no signing secret")
    when = datetime.fromtimestamp(int(timestamp), tz=UTC)
    try:
        sigs = [Webhook(s).sign(msg_id=msg_id, timestamp=when, data=body) for s in secrets]
    except Exception as exc:  # noqa: BLE001 - a corrupt stored secret (bad base64, empty)
        raise WebhookError(f"cannot sign with the stored secret ({type(exc).__name__})") from None
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": " ".join(sigs),
    }
