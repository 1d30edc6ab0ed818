"""Customer-managed mode: headers pointing to the customer's endpoints with sealed params/pid,
and the decrypt call answering Adobe Journey Optimizer's consent JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
from pydantic import ValidationError

from conftest import Server, build_kit, free_port
from unsubkit.clock import FrozenClock
from unsubkit.consent.model import ConsentLevel
from unsubkit.customer_managed import (
    Params,
    Profile,
    consent_json,
    open_params,
    seal_params,
    seal_profile,
    split_email_params,
)
from unsubkit.errors import ExpiredToken, InvalidToken
from unsubkit.headers import parse_list_unsubscribe
from unsubkit.settings import Brand, Settings
from unsubkit.tokens import KeyRing, TokenCodec, new_key

ADOBE_KEYS = {"profileNameSpace", "profileId", "emailAddress", "emailNameSpace", "sandboxId", "optOutLevel",
              "channelType", "timestamp"}
ACME = Brand(customer_managed=True, customer_url="https://crm.example.com/unsubscribe",
             customer_mailto="unsub@crm.example.com")


def split(url: str) -> tuple[str, str]:
    q = parse_qs(urlsplit(url).query)
    return q["params"][0], q["pid"][0]


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing([new_key(0.0)])


def test_headers_point_to_the_customer_and_store_nothing(make_settings: Callable[..., Settings],
                                                         clock: FrozenClock) -> None:
    kit = build_kit(make_settings(brands={"acme": ACME}), clock)
    try:
        r = kit.headers_for("Jane@Example.com", "marketing", brand="acme", message_id="<m1@example.com>",
                            campaign="spring")
        assert r.token is None
        assert r.url is not None and r.url.startswith("https://crm.example.com/unsubscribe?params=")
        assert r.mailto is not None and r.mailto.startswith("mailto:unsub@crm.example.com?subject=unsubscribe%20v1.")
        assert r.headers is not None
        values = r.headers.as_dict()
        assert values["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert parse_list_unsubscribe(values["List-Unsubscribe"]) == [r.url, r.mailto]
        assert "jane" not in r.url.lower() and "jane" not in r.mailto.lower()
        params, pid = split(r.url)
        assert split_email_params(unquote(r.mailto.split("subject=")[1])) == (params, pid)
        body = consent_json(kit.codec.ring, params, pid, now=clock(), lifetime=86400,
                            purpose_name=lambda p, t: ("marketing", None))
        assert ADOBE_KEYS <= set(body)
        assert body["emailAddress"] == "jane@example.com"
        assert body["profileNameSpace"] == "Email" and body["profileId"] == "jane@example.com"
        assert body["sandboxId"] == "acme" and body["optOutLevel"] == "channel" and body["channelType"] == "email"
        assert body["messageId"] == "<m1@example.com>" and body["campaignId"] == "spring"
        assert body["unsubscribeScope"] == "purpose" and body["purpose"] == "marketing"
        # The default brand is unchanged: our own one-click URL.
        assert (kit.headers_for("jane@example.com", "marketing").url or "").startswith("https://unsub.example.com/u/")
        assert kit.status("jane@example.com").events == []
    finally:
        kit.close()


def test_identity_level_and_contact_profile(ring: KeyRing) -> None:
    p = Params("acme", 1, 4, ConsentLevel.IDENTITY, issued_at=int(time.time()), link="abc")
    prof = Profile("42", "contact", "jane@example.com", link="abc")
    body = consent_json(ring, seal_params(ring, p), seal_profile(ring, prof), now=time.time(), lifetime=60)
    assert (body["profileNameSpace"], body["profileId"], body["optOutLevel"]) == ("contact", "42", "identity")
    assert body["unsubscribeScope"] == "topic" and body["topicId"] == 4
    assert body["timestamp"].endswith("Z")


def test_tampered_mismatched_swapped_and_expired_values_are_refused(ring: KeyRing) -> None:
    now = time.time()
    params = seal_params(ring, Params("acme", 1, issued_at=int(now), link="L1"))
    pid = seal_profile(ring, Profile("jane@example.com", "Email", "jane@example.com", link="L1"))
    other_pid = seal_profile(ring, Profile("joe@example.com", "Email", "joe@example.com", link="L2"))
    flipped = params[:20] + ("A" if params[20] != "A" else "B") + params[21:]
    for bad_params, bad_pid in ((flipped, pid), (params, other_pid), (pid, params), (params[:-4], pid),
                                ("not base64!", pid)):
        with pytest.raises(InvalidToken):
            consent_json(ring, bad_params, bad_pid, now=now, lifetime=60)
    with pytest.raises(InvalidToken):  # another ring's key
        open_params(KeyRing([new_key(0.0)]), params)
    with pytest.raises(ExpiredToken):
        consent_json(ring, params, pid, now=now + 61, lifetime=60)
    # Neither value can stand in for a one-click token, and no token for them.
    codec = TokenCodec(ring)
    with pytest.raises(InvalidToken):
        codec.open(params)
    from unsubkit.tokens import Claims

    with pytest.raises(InvalidToken):
        open_params(ring, codec.seal(Claims(address="jane@example.com", purpose_id=1)))


ACME_TOML = """
[brands.acme]
customer_managed = true
customer_url = "https://crm.example.com/unsubscribe"
customer_mailto = "unsub@crm.example.com"
"""


def test_decrypt_api_end_to_end(server_factory: Callable[..., Server]) -> None:
    server = server_factory("--no-webhooks", extra_toml=ACME_TOML, UNSUBKIT_SMTP_PORT=str(free_port()))
    out = json.loads(server.cli("headers", "--to", "jane@example.com", "--purpose", "marketing", "--brand", "acme",
                                "--message-id", "<m9@example.com>", "--json").stdout)
    assert out["token"] is None and out["url"].startswith("https://crm.example.com/unsubscribe?")
    params, pid = split(out["url"])
    auth = {"Authorization": "Bearer test-api-key"}
    r = httpx.get(f"{server.url}/api/v1/decrypt", params={"params": params, "pid": pid}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert ADOBE_KEYS <= set(body)
    assert body["emailAddress"] == "jane@example.com" and body["sandboxId"] == "acme"
    assert body["channelType"] == "email" and body["optOutLevel"] == "channel"
    assert body["purpose"] == "marketing" and body["messageId"] == "<m9@example.com>"
    # The mailto variant: the whole subject works as emailParams.
    subject = unquote(out["mailto"].split("subject=")[1])
    r = httpx.get(f"{server.url}/api/v1/decrypt", params={"emailParams": subject}, headers=auth)
    assert r.status_code == 200 and r.json()["emailAddress"] == "jane@example.com"
    # Tampered: 400 with a reason. No key or a wrong key: 401.
    bad = params[:-3] + ("AAA" if not params.endswith("AAA") else "BBB")
    r = httpx.get(f"{server.url}/api/v1/decrypt", params={"params": bad, "pid": pid}, headers=auth)
    assert r.status_code == 400 and "cannot decrypt" in r.json()["error"]
    assert httpx.get(f"{server.url}/api/v1/decrypt", params={"params": params}, headers=auth).status_code == 400
    assert httpx.get(f"{server.url}/api/v1/decrypt", params={"params": params, "pid": pid}).status_code == 401
    r = httpx.get(f"{server.url}/api/v1/decrypt", params={"params": params, "pid": pid},
                  headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    # unsubkit stored nothing for this brand.
    status = json.loads(server.cli("consent", "status", "jane@example.com", "--json").stdout)
    assert status["events"] == []


def test_a_customer_managed_brand_needs_its_endpoints() -> None:
    with pytest.raises(ValidationError, match="customer_url"):
        Brand(customer_managed=True)
    with pytest.raises(ValidationError, match="http"):
        Brand(customer_managed=True, customer_url="ftp://crm.example.com/u")
    with pytest.raises(ValidationError, match="customer_mailto"):
        Brand(customer_managed=True, customer_mailto="not-an-address")
    assert Brand(customer_managed=True, customer_mailto="u@crm.example.com").customer_url is None
