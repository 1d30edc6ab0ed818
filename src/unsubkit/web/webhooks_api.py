"""Admin API for webhooks and the customer-managed decrypt call (bearer key, like ``api.py``).

    GET    /api/v1/webhooks                      endpoints (never secrets) with delivery counts
    POST   /api/v1/webhooks                      {"url", "brands"?, "purposes"?, "event_types"?}
                                                 -> 201 with the secret, shown this once
    DELETE /api/v1/webhooks/{id}                 remove; undelivered deliveries are cancelled
    POST   /api/v1/webhooks/{id}/rotate-secret   {"grace_seconds"?} -> the new secret
    GET    /api/v1/decrypt?params=..&pid=..      customer-managed mode (or ?emailParams=v1.P.Q)
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..customer_managed import consent_json, open_params, split_email_params
from ..errors import ConsentError, ExpiredToken, InvalidToken, WebhookError
from ..hooks.model import validate_event_types
from ..hooks.worker import hook_store
from ..service import Unsubkit
from .api import _json_body, authorized, error
from .context import WebContext

__all__ = ["webhook_routes"]

DEFAULT_GRACE = 24 * 3600.0


def _strings(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WebhookError(f"'{key}' must be a list of strings")
    return value


def validate_filters(kit: Unsubkit, brands: list[str], purposes: list[str], event_types: list[str]) -> None:
    """Filters naming nothing would silently match nothing: refuse them."""
    for b in brands:
        kit.settings.brand(b)
    for p in purposes:
        kit.store.purpose(p)
    validate_event_types(event_types)


def check_url(url: str) -> str:
    url = url.strip()
    if not url.startswith(("https://", "http://")) or len(url) > 2000 or any(c.isspace() for c in url):
        raise WebhookError("a webhook URL must be an http(s) URL")
    return url


@authorized
async def list_webhooks(request: Request) -> Response:
    ctx: WebContext = request.app.state.ctx
    store = hook_store(ctx.kit)

    def read() -> list[dict[str, Any]]:
        counts = store.counts()
        return [{**ep.as_json(), "deliveries": counts.get(ep.id, {})} for ep in store.endpoints()]

    return JSONResponse({"webhooks": await asyncio.to_thread(read)})


@authorized
async def add_webhook(request: Request) -> Response:
    ctx: WebContext = request.app.state.ctx
    data = await _json_body(request)
    url = data.get("url")
    if not isinstance(url, str):
        return error(400, "'url' is required")
    brands, purposes, types = _strings(data, "brands"), _strings(data, "purposes"), _strings(data, "event_types")
    description = data.get("description") or ""
    if not isinstance(description, str):
        return error(400, "'description' must be a string")

    def add() -> dict[str, Any]:
        validate_filters(ctx.kit, brands, purposes, types)
        ep = hook_store(ctx.kit).add_endpoint(check_url(url), now=ctx.kit.clock(), brands=brands,
                                              purposes=purposes, event_types=types, description=description)
        return {**ep.as_json(), "secret": ep.secret}

    try:
        out = await asyncio.to_thread(add)
    except ConsentError as exc:
        return error(400, str(exc))
    return JSONResponse(out, status_code=201, headers={"Cache-Control": "no-store"})


@authorized
async def remove_webhook(request: Request) -> Response:
    ctx: WebContext = request.app.state.ctx
    ep_id = request.path_params["id"]
    try:
        n = await asyncio.to_thread(hook_store(ctx.kit).remove_endpoint, ep_id, now=ctx.kit.clock())
    except WebhookError as exc:
        return error(404, str(exc))
    return JSONResponse({"id": ep_id, "removed": True, "cancelled_deliveries": n})


@authorized
async def rotate_secret(request: Request) -> Response:
    ctx: WebContext = request.app.state.ctx
    data = await _json_body(request)
    grace = data.get("grace_seconds", DEFAULT_GRACE)
    if not isinstance(grace, int | float) or grace < 0:
        return error(400, "'grace_seconds' must be a number >= 0")
    try:
        ep = await asyncio.to_thread(hook_store(ctx.kit).rotate_secret, request.path_params["id"],
                                     now=ctx.kit.clock(), grace=float(grace))
    except WebhookError as exc:
        return error(404, str(exc))
    return JSONResponse({**ep.as_json(), "secret": ep.secret}, headers={"Cache-Control": "no-store"})


@authorized
async def decrypt(request: Request) -> Response:
    """Open customer-managed ``params`` + ``pid`` (Adobe Journey Optimizer's decrypt call)."""
    ctx: WebContext = request.app.state.ctx
    kit = ctx.kit
    q = request.query_params
    params, pid = q.get("params"), q.get("pid")
    try:
        if not (params and pid):
            if not q.get("emailParams"):
                return error(400, "give 'params' and 'pid' (or 'emailParams')")
            params, pid = split_email_params(q["emailParams"])

        def names(purpose_id: int, topic_id: int | None) -> tuple[str | None, str | None]:
            p = kit.store.find_purpose(purpose_id)
            t = kit.store.find_topic(topic_id) if topic_id is not None else None
            return (p.name if p else None, t.name if t else None)

        def run() -> dict[str, Any]:
            assert params is not None and pid is not None
            brand = open_params(kit.codec.ring, params).brand
            return consent_json(kit.codec.ring, params, pid, now=kit.clock(),
                                lifetime=kit.codec.lifetime_of(brand), purpose_name=names)

        body = await asyncio.to_thread(run)
    except ExpiredToken as exc:
        return error(410, str(exc))
    except InvalidToken as exc:
        return error(400, f"cannot decrypt: {exc}")
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def webhook_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/webhooks", list_webhooks, methods=["GET"]),
        Route("/api/v1/webhooks", add_webhook, methods=["POST"]),
        Route("/api/v1/webhooks/{id}", remove_webhook, methods=["DELETE"]),
        Route("/api/v1/webhooks/{id}/rotate-secret", rotate_secret, methods=["POST"]),
        Route("/api/v1/decrypt", decrypt, methods=["GET"]),
    ]
