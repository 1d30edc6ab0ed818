"""``/u/{token}``: the one-click endpoint (POST) and its landing page (GET/HEAD).

The POST takes no cookie, no login and no CSRF token, and never redirects (RFC 8058 section 3.2;
trap 7). It answers 200 only after the opt-out is committed. GET never changes state: link
scanners fetch every URL (trap 1), and the page's form needs a human click (no script).
"""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from ..consent.model import Mechanism, RequestMeta
from ..errors import ExpiredToken, StoreBusy, StoreError, TokenError
from .context import WebContext
from .form import BadForm, parse_one_click
from .pages import open_or_error_page, render_page, token_page

__all__ = ["one_click_get", "one_click_post", "read_limited"]

log = logging.getLogger("unsubkit.web")

NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}
# The success answers, built once (every header costs the HTTP layer a validation per response).
_OK_BODY = "You are unsubscribed.\n"
_OK_HEADERS = {True: {"Cache-Control": "no-store", "X-Unsubkit-Changed": "1"},
               False: {"Cache-Control": "no-store", "X-Unsubkit-Changed": "0"}}


class BodyTooLarge(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise BodyTooLarge
        except ValueError:
            raise BodyTooLarge from None
    # Straight from the ASGI messages: ``request.stream()`` (an async generator) cost the hot
    # path more than the rest of reading a 26-byte body.
    chunks: list[bytes] = []
    size = 0
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: nobody to answer
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _text(status: int, body: str, **extra: str) -> PlainTextResponse:
    return PlainTextResponse(body + "\n", status_code=status, headers={**NO_STORE, **extra})


def request_meta(request: Request) -> RequestMeta:
    client = request.scope.get("client")
    return RequestMeta(client_ip=client[0] if client else None, user_agent=request.headers.get("user-agent"))


async def one_click_post(request: Request) -> Response:
    ctx: WebContext = request.app.state.ctx
    token = request.path_params["token"]
    try:
        body = await read_limited(request, ctx.settings.max_body)
    except BodyTooLarge:
        ctx.metrics.oneclick.labels("413").inc()
        return _text(413, "request body too large")
    try:
        form = await parse_one_click(request.headers, body)
    except BadForm as exc:
        ctx.metrics.oneclick.labels("400").inc()
        return _text(400, str(exc))
    try:
        claims = ctx.kit.open_token(token)
    except ExpiredToken:
        ctx.metrics.oneclick.labels("410").inc()
        return _text(410, "this unsubscribe link has expired")
    except TokenError as exc:
        ctx.metrics.oneclick.labels("400").inc()
        return _text(400, f"invalid unsubscribe token: {exc}")
    from_page = form.via == "landing"
    mechanism = Mechanism.LANDING_PAGE if from_page else Mechanism.ONE_CLICK
    changes = ctx.kit.changes_for_token(claims, mechanism=mechanism, meta=request_meta(request))
    try:
        events = await ctx.writer.submit(changes)
    except StoreBusy:
        ctx.metrics.oneclick.labels("503").inc()
        return _text(503, "temporarily unable to record, please retry", **{"Retry-After": "5"})
    except StoreError:
        ctx.metrics.oneclick.labels("500").inc()
        return _text(500, "unable to record the unsubscribe request")
    changed = any(e.changed for e in events)
    ctx.metrics.oneclick_ok.inc()
    # Debug, not info: one line per opt-out is an access log by another name (the events table
    # and /metrics are the record); it costs the hot path a formatted write per request.
    log.debug("opt-out recorded mechanism=%s brand=%s changed=%s event=%s",
              mechanism, claims.brand, changed, events[0].id)
    if from_page:
        return render_page(ctx, "done.html", {"page": await token_page(ctx, claims, token)},
                           headers={"X-Unsubkit-Changed": "1" if changed else "0"})
    return PlainTextResponse(_OK_BODY, headers=_OK_HEADERS[changed])


async def one_click_get(request: Request) -> Response:
    ctx: WebContext = request.app.state.ctx
    token = request.path_params["token"]
    claims = open_or_error_page(ctx, token)
    if isinstance(claims, Response):
        return claims
    page = await token_page(ctx, claims, token)
    return render_page(ctx, "landing.html", {"page": page})
