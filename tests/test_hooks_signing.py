"""Standard Webhooks signatures, checked with the reference ``standardwebhooks`` package."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from unsubkit.errors import WebhookError
from unsubkit.hooks import new_secret, sign_headers


def test_secret_format() -> None:
    s = new_secret()
    assert s.startswith("whsec_")
    assert len(base64.b64decode(s[len("whsec_"):])) == 32
    assert new_secret() != s


def test_signature_verifies_with_the_reference_implementation() -> None:
    secret = new_secret()
    body = '{"event_id":1,"type":"consent.opted_out"}'
    now = time.time()
    headers = sign_headers([secret], "msg_1_ep_x", now, body)
    assert headers["webhook-id"] == "msg_1_ep_x"
    assert headers["webhook-timestamp"] == str(int(now))
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers) == {"event_id": 1, "type": "consent.opted_out"}


def test_tampering_or_another_secret_fails() -> None:
    secret = new_secret()
    body = '{"event_id":1}'
    headers = sign_headers([secret], "msg_1", time.time(), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify('{"event_id":2}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "msg_2"})


def test_during_rotation_both_secrets_verify() -> None:
    old, new = new_secret(), new_secret()
    body = "{}"
    headers = sign_headers([new, old], "msg_9", time.time(), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)


def test_corrupt_secret_is_a_clear_error() -> None:
    with pytest.raises(WebhookError):
        sign_headers(["whsec_"], "msg", time.time(), "{}")
    with pytest.raises(WebhookError):
        sign_headers([], "msg", time.time(), "{}")
