"""Request shapes for email service providers' send APIs (pure; no network).

Each helper turns one recipient's unsubscribe fields — an
:class:`~unsubkit.headers.UnsubscribeHeaders`, a ``{name: value}`` mapping, or ``None`` for
mail without them — or a prepared raw message into the JSON/form shape the provider's public
documentation shows. Values are passed unfolded: the provider builds the MIME and folds.

Two kinds of API:

* **the provider builds the message** (SendGrid v3 ``mail/send``, Mailgun ``messages``,
  Postmark ``email``): the fields go in as custom headers and the provider DKIM-signs with
  its own key, so our signature does not apply. Turn off the provider's own unsubscribe
  handling (SendGrid subscription tracking, Mailgun unsubscribe tracking) or it may add a
  second List-Unsubscribe;
* **raw MIME** (Amazon SES v2 ``SendEmail`` with ``Content.Raw``, Mailgun ``messages.mime``):
  the bytes from ``prepare`` go out as they are, with our DKIM signature intact. SES needs
  this route for custom headers in general.

Tokens are per recipient: build one request (SendGrid: one personalization) per recipient.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

from .errors import MessageError
from .headers import LIST_UNSUBSCRIBE, LIST_UNSUBSCRIBE_POST, UnsubscribeHeaders

__all__ = [
    "HeaderSource",
    "header_fields",
    "mailgun_fields",
    "mailgun_message",
    "mailgun_mime",
    "postmark_email",
    "postmark_headers",
    "sendgrid_headers",
    "sendgrid_mail",
    "sendgrid_personalization",
    "ses_v2_raw",
]

HeaderSource: TypeAlias = UnsubscribeHeaders | Mapping[str, str] | None


def header_fields(headers: HeaderSource) -> dict[str, str]:
    """The unsubscribe fields as ``{name: one-line value}`` (empty for ``None``)."""
    if headers is None:
        return {}
    fields = headers.as_dict() if isinstance(headers, UnsubscribeHeaders) else dict(headers)
    out: dict[str, str] = {}
    for name, value in fields.items():
        if name.lower() not in (LIST_UNSUBSCRIBE.lower(), LIST_UNSUBSCRIBE_POST.lower()):
            raise MessageError(f"not an unsubscribe field: {name!r}")
        # Unfold: a JSON or form value is one line; the provider folds when it writes MIME.
        out[name] = " ".join(value.split())
    return out


def _content(text: str | None, html: str | None) -> None:
    if text is None and html is None:
        raise MessageError("a message needs a text or an HTML body")


# -- SendGrid v3 (POST https://api.sendgrid.com/v3/mail/send) ------------------------------


def sendgrid_headers(headers: HeaderSource) -> dict[str, str]:
    """The ``headers`` object (string keys and values) of a message or personalization."""
    return header_fields(headers)


def sendgrid_personalization(
    to: str, headers: HeaderSource, *, name: str | None = None
) -> dict[str, Any]:
    """One ``personalizations[]`` entry: one recipient with their own fields."""
    recipient: dict[str, str] = {"email": to}
    if name:
        recipient["name"] = name
    out: dict[str, Any] = {"to": [recipient]}
    fields = sendgrid_headers(headers)
    if fields:
        out["headers"] = fields
    return out


def sendgrid_mail(
    *,
    from_email: str,
    subject: str,
    personalizations: Sequence[Mapping[str, Any]],
    text: str | None = None,
    html: str | None = None,
    from_name: str | None = None,
) -> dict[str, Any]:
    """A whole ``mail/send`` body. SendGrid's subscription tracking is turned off so that it
    does not add its own List-Unsubscribe beside ours."""
    _content(text, html)
    if not personalizations:
        raise MessageError("SendGrid needs at least one personalization")
    sender: dict[str, str] = {"email": from_email}
    if from_name:
        sender["name"] = from_name
    content = []
    if text is not None:
        content.append({"type": "text/plain", "value": text})
    if html is not None:
        content.append({"type": "text/html", "value": html})
    return {
        "personalizations": [dict(p) for p in personalizations],
        "from": sender,
        "subject": subject,
        "content": content,
        "tracking_settings": {"subscription_tracking": {"enable": False}},
    }


# -- Mailgun (POST https://api.mailgun.net/v3/{domain}/messages[.mime]) ----------------------


def mailgun_fields(headers: HeaderSource) -> list[tuple[str, str]]:
    """Form fields ``h:List-Unsubscribe`` / ``h:List-Unsubscribe-Post`` (``h:`` adds a header)."""
    return [(f"h:{name}", value) for name, value in header_fields(headers).items()]


def mailgun_message(
    *,
    from_: str,
    to: str,
    subject: str,
    headers: HeaderSource,
    text: str | None = None,
    html: str | None = None,
) -> list[tuple[str, str]]:
    """Form fields for ``messages`` (a list: form fields may repeat). One recipient."""
    _content(text, html)
    fields = [("from", from_), ("to", to), ("subject", subject)]
    if text is not None:
        fields.append(("text", text))
    if html is not None:
        fields.append(("html", html))
    return fields + mailgun_fields(headers)


def mailgun_mime(raw: bytes, to: str) -> tuple[list[tuple[str, str]], dict[str, tuple[str, bytes, str]]]:
    """(form fields, files) for ``messages.mime``: the prepared message, signature intact.

    Send as multipart/form-data, e.g. ``httpx.post(url, data=dict(fields), files=files)``.
    """
    if not raw:
        raise MessageError("empty message")
    return [("to", to)], {"message": ("message.mime", bytes(raw), "message/rfc822")}


# -- Amazon SES v2 (POST /v2/email/outbound-emails, SendEmail) ------------------------------


def ses_v2_raw(
    raw: bytes,
    *,
    to: Sequence[str] | None = None,
    from_address: str | None = None,
    configuration_set: str | None = None,
    for_sdk: bool = False,
) -> dict[str, Any]:
    """A ``SendEmail`` request with ``Content.Raw.Data``: the prepared bytes, unchanged.

    For the HTTPS API ``Data`` is base64 text; with ``for_sdk=True`` it stays bytes, since
    the AWS SDKs (``boto3.client("sesv2").send_email(**request)``) encode it themselves.
    Without ``to``, SES takes the recipients from the message's To/Cc/Bcc fields.
    """
    if not raw:
        raise MessageError("empty message")
    data: bytes | str = bytes(raw) if for_sdk else base64.b64encode(raw).decode("ascii")
    request: dict[str, Any] = {"Content": {"Raw": {"Data": data}}}
    if from_address:
        request["FromEmailAddress"] = from_address
    if to:
        request["Destination"] = {"ToAddresses": list(to)}
    if configuration_set:
        request["ConfigurationSetName"] = configuration_set
    return request


# -- Postmark (POST https://api.postmarkapp.com/email) --------------------------------------


def postmark_headers(headers: HeaderSource) -> list[dict[str, str]]:
    """The ``Headers`` array: ``[{"Name": ..., "Value": ...}]``."""
    return [{"Name": name, "Value": value} for name, value in header_fields(headers).items()]


def postmark_email(
    *,
    from_: str,
    to: str,
    subject: str,
    headers: HeaderSource,
    text: str | None = None,
    html: str | None = None,
    message_stream: str = "outbound",
) -> dict[str, Any]:
    """A whole ``email`` request body for one recipient."""
    _content(text, html)
    body: dict[str, Any] = {"From": from_, "To": to, "Subject": subject}
    if html is not None:
        body["HtmlBody"] = html
    if text is not None:
        body["TextBody"] = text
    body["MessageStream"] = message_stream
    hdrs = postmark_headers(headers)
    if hdrs:
        body["Headers"] = hdrs
    return body
