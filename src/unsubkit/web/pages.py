"""HTML pages: the landing page behind ``/u/{token}`` and the preference page ``/p/{token}``.

Pages carry a strict Content-Security-Policy (no script at all), ``Referrer-Policy: no-referrer``
(the token is in the URL) and ``no-store``; forms post back to our own origin only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ..address import mask
from ..consent.decisions import decide
from ..consent.model import Action, ConsentChange, Mechanism, Reason, Scope, Source
from ..errors import ExpiredToken, StoreError, TokenError
from ..tokens import Claims
from .context import WebContext

__all__ = [
    "TokenPage",
    "make_templates",
    "open_or_error_page",
    "preference_get",
    "preference_post",
    "render_page",
    "token_page",
]

TEMPLATES = Path(__file__).parent / "templates"

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
}


def make_templates() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        auto_reload=False,
    )


def render_page(
    ctx: WebContext,
    name: str,
    data: dict[str, Any],
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    html = ctx.templates.get_template(name).render(**data)
    return HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


@dataclass(frozen=True, slots=True)
class TokenPage:
    token: str
    brand: str
    masked: str
    purpose: str
    topic: str | None
    opted_out: bool


def _describe(ctx: WebContext, claims: Claims) -> TokenPage:
    store = ctx.kit.store
    purpose = store.find_purpose(claims.purpose_id)
    topic = store.find_topic(claims.topic_id) if claims.topic_id is not None else None
    try:
        brand = ctx.settings.brand(claims.brand)
        display = brand.display_name or claims.brand
    except Exception:  # noqa: BLE001 - a brand removed since sending still gets a page
        display = claims.brand
    opted_out = False
    if purpose is not None:
        state = store.state(claims.address)
        opted_out = not decide(purpose, claims.topic_id, state).allowed
    return TokenPage(
        token="",
        brand="" if display == "default" else display,
        masked=mask(claims.address),
        purpose=purpose.name if purpose else "this mailing list",
        topic=topic.name if topic else None,
        opted_out=opted_out,
    )


async def token_page(ctx: WebContext, claims: Claims, token: str) -> TokenPage:
    page = await asyncio.to_thread(_describe, ctx, claims)
    return TokenPage(token, page.brand, page.masked, page.purpose, page.topic, page.opted_out)


def open_or_error_page(ctx: WebContext, token: str) -> Claims | HTMLResponse:
    """The token's claims, or the error page a person should see (410 expired, 400 invalid)."""
    try:
        return ctx.kit.open_token(token)
    except ExpiredToken:
        return render_page(ctx, "error.html", {"title": "Link expired",
                           "message": "This link has expired."}, status=410)
    except TokenError:
        return render_page(ctx, "error.html", {"title": "Invalid link",
                           "message": "This link is not valid."}, status=400)


async def preference_get(request: Request) -> Response:
    ctx: WebContext = request.app.state.ctx
    token = request.path_params["token"]
    claims = open_or_error_page(ctx, token)
    if isinstance(claims, Response):
        return claims
    ctx.metrics.landing.inc()
    page = await token_page(ctx, claims, token)
    return render_page(ctx, "preferences.html", {"page": page, "saved": None})


async def preference_post(request: Request) -> Response:
    ctx: WebContext = request.app.state.ctx
    token = request.path_params["token"]
    claims = open_or_error_page(ctx, token)
    if isinstance(claims, Response):
        return claims
    from .oneclick import BodyTooLarge, read_limited, request_meta

    try:
        body = await read_limited(request, ctx.settings.max_body)
    except BodyTooLarge:
        return render_page(ctx, "error.html", {"title": "Request too large",
                           "message": "The form was too large."}, status=413)
    from urllib.parse import parse_qs

    action = parse_qs(body.decode("utf-8", "replace")).get("action", [""])[0]
    if action not in ("unsubscribe", "resubscribe"):
        return render_page(ctx, "error.html", {"title": "Bad request",
                           "message": "Choose unsubscribe or resubscribe."}, status=400)
    meta = request_meta(request)
    if action == "unsubscribe":
        changes = ctx.kit.changes_for_token(claims, mechanism=Mechanism.PREFERENCE_PAGE, meta=meta)
    else:
        changes = [
            ConsentChange(
                address=claims.address,
                scope=Scope.of(claims.purpose_id, claims.topic_id),
                action=Action.OPT_IN,
                source=Source.PREFERENCE_CENTER,
                reason=Reason.RESUBSCRIBE,
                mechanism=Mechanism.PREFERENCE_PAGE,
                brand=claims.brand,
                message_id=claims.message_id,
                level=claims.level,
                contact_id=claims.contact_id,
                meta=meta,
                token_issued_at=claims.issued_at,
            )
        ]
    try:
        await ctx.writer.submit(changes)
    except StoreError:
        return render_page(ctx, "error.html", {"title": "Please try again",
                           "message": "We could not save your choice. Please try again."},
                           status=503, headers={"Retry-After": "5"})
    page = await token_page(ctx, claims, token)
    return render_page(ctx, "preferences.html", {"page": page, "saved": action})
