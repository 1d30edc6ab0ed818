"""ESP request shapes, each checked against the shape its public documentation shows.

SendGrid v3 mail/send: ``{"personalizations": [{"to": [{"email"}], "headers": {..}}],
"from": {"email"}, "subject", "content": [{"type", "value"}]}`` (headers: string keys/values).
Mailgun messages: form fields, ``h:X-My-Header`` adds a header; messages.mime: ``to`` plus a
``message`` file. SES v2 SendEmail: ``{"FromEmailAddress", "Destination": {"ToAddresses"},
"Content": {"Raw": {"Data": <base64>}}, "ConfigurationSetName"}``. Postmark email:
``{"From", "To", "Subject", "HtmlBody", "TextBody", "MessageStream",
"Headers": [{"Name", "Value"}]}``.
"""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from mailcorpus import plain_ascii, verify_all
from unsubkit.dkim import DKIMSigner, txt_record
from unsubkit.errors import MessageError
from unsubkit.esp import (
    header_fields,
    mailgun_fields,
    mailgun_message,
    mailgun_mime,
    postmark_email,
    postmark_headers,
    sendgrid_headers,
    sendgrid_mail,
    sendgrid_personalization,
    ses_v2_raw,
)
from unsubkit.headers import UnsubscribeHeaders
from unsubkit.message import prepare_message

TOKEN = "T" * 120  # long enough that the List-Unsubscribe field folds on the wire
HEADERS = UnsubscribeHeaders(
    url=f"https://unsub.example.com/u/{TOKEN}",
    mailto=f"mailto:unsubscribe+{TOKEN}@example.com?subject=unsubscribe",
)
LU = f"<https://unsub.example.com/u/{TOKEN}>, " \
     f"<mailto:unsubscribe+{TOKEN}@example.com?subject=unsubscribe>"


def test_header_fields_are_one_line_values() -> None:
    assert "\r\n" in HEADERS.lines()  # folded on the wire...
    assert header_fields(HEADERS) == {  # ...but one line in a JSON or form value
        "List-Unsubscribe": LU,
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert header_fields(None) == {}
    folded = {"List-Unsubscribe": "<https://a.example/u/1>,\r\n <mailto:u@a.example>"}
    assert header_fields(folded) == {"List-Unsubscribe": "<https://a.example/u/1>, <mailto:u@a.example>"}
    with pytest.raises(MessageError):
        header_fields({"X-Other": "1"})


def test_sendgrid_shape() -> None:
    p = sendgrid_personalization("jane@example.org", HEADERS, name="Jane")
    assert p == {
        "to": [{"email": "jane@example.org", "name": "Jane"}],
        "headers": {"List-Unsubscribe": LU, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    }
    body = sendgrid_mail(from_email="news@example.com", subject="Hi", personalizations=[p],
                         text="Hello", html="<p>Hello</p>")
    assert body["personalizations"][0]["to"][0]["email"] == "jane@example.org"
    assert body["from"] == {"email": "news@example.com"}
    assert body["subject"] == "Hi"
    assert body["content"] == [{"type": "text/plain", "value": "Hello"},
                               {"type": "text/html", "value": "<p>Hello</p>"}]
    assert body["tracking_settings"] == {"subscription_tracking": {"enable": False}}
    hdrs = body["personalizations"][0]["headers"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in hdrs.items())
    json.dumps(body)  # serializable as is
    assert sendgrid_headers(None) == {}
    assert "headers" not in sendgrid_personalization("a@example.org", None)
    with pytest.raises(MessageError):
        sendgrid_mail(from_email="a@example.com", subject="s", personalizations=[], text="x")
    with pytest.raises(MessageError):
        sendgrid_mail(from_email="a@example.com", subject="s", personalizations=[p])


def test_mailgun_shape() -> None:
    assert mailgun_fields(HEADERS) == [
        ("h:List-Unsubscribe", LU),
        ("h:List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ]
    fields = mailgun_message(from_="News <news@example.com>", to="jane@example.org",
                             subject="Hi", headers=HEADERS, text="Hello")
    assert fields[:4] == [("from", "News <news@example.com>"), ("to", "jane@example.org"),
                          ("subject", "Hi"), ("text", "Hello")]
    assert dict(fields)["h:List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mailgun_fields(None) == []


def test_mailgun_mime_keeps_the_signed_bytes() -> None:
    raw = b"From: a@example.com\r\n\r\nx\r\n"
    data, files = mailgun_mime(raw, "jane@example.org")
    assert data == [("to", "jane@example.org")]
    assert files == {"message": ("message.mime", raw, "message/rfc822")}
    with pytest.raises(MessageError):
        mailgun_mime(b"", "jane@example.org")


def test_ses_v2_raw_shape_and_signature_survive() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    signer = DKIMSigner(key, domain="example.com", selector="e1")
    raw = prepare_message(plain_ascii(), headers=HEADERS, body_url="https://unsub.example.com/p/x",
                          signers=[signer])
    req = ses_v2_raw(raw, to=["jane@example.org"], from_address="news@example.com",
                     configuration_set="marketing")
    assert set(req) == {"Content", "Destination", "FromEmailAddress", "ConfigurationSetName"}
    assert req["Destination"] == {"ToAddresses": ["jane@example.org"]}
    data = req["Content"]["Raw"]["Data"]
    assert isinstance(data, str)
    decoded = base64.b64decode(data)
    assert decoded == raw
    assert verify_all(decoded, {signer.dns_name: txt_record(key)}) == [True]
    json.dumps(req)
    sdk = ses_v2_raw(raw, for_sdk=True)
    assert sdk == {"Content": {"Raw": {"Data": raw}}}
    with pytest.raises(MessageError):
        ses_v2_raw(b"")


def test_postmark_shape() -> None:
    assert postmark_headers(HEADERS) == [
        {"Name": "List-Unsubscribe", "Value": LU},
        {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
    ]
    body = postmark_email(from_="news@example.com", to="jane@example.org", subject="Hi",
                          headers=HEADERS, html="<b>Hi</b>", text="Hi", message_stream="broadcast")
    assert body == {
        "From": "news@example.com",
        "To": "jane@example.org",
        "Subject": "Hi",
        "HtmlBody": "<b>Hi</b>",
        "TextBody": "Hi",
        "MessageStream": "broadcast",
        "Headers": postmark_headers(HEADERS),
    }
    transactional = postmark_email(from_="a@example.com", to="b@example.org", subject="Reset",
                                   headers=None, text="code")
    assert "Headers" not in transactional
    with pytest.raises(MessageError):
        postmark_email(from_="a@example.com", to="b@example.org", subject="x", headers=None)
