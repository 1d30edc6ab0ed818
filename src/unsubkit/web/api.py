"""Admin JSON API under ``/api/v1`` (``Authorization: Bearer <api_key>``).

Disabled (every call 404) when no ``api_key`` is configured. Keys are compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..consent.model import Mechanism, RequestMeta
from ..errors import AddressError, ConsentError, StoreBusy, StoreError, UnsubkitError
from ..service import event_json
from .context import WebContext

__all__ = ["api_routes", "authorized", "error"]

Handler = Callable[[Request], Awaitable[Response]]


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def authorized(handler: Handler) -> Handler:
    async def wrapper(request: Request) -> Response:
        ctx: WebContext = request.app.state.ctx
        key = ctx.settings.api_key
        if key is None:
            return error(404, "admin API is disabled (set api_key)")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), key.get_secret_value().encode()
        ):
            return JSONResponse({"error": "missing or wrong bearer key"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        try:
            return await handler(request)
        except (AddressError, ConsentError) as exc:
            return error(400 if isinstance(exc, AddressError) else 404, str(exc))
        except StoreBusy as exc:
            return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "5"})
        except StoreError as exc:
            return error(500, str(exc))
        except UnsubkitError as exc:
            return error(400, str(exc))

    return wrapper


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > 64 * 1024:
        raise ConsentError("request body too large")
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise UnsubkitError("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise UnsubkitError("body must be a JSON object")
    return data


@authorized
async def consent_status(request: Request) -> Response:
    ctx: WebContext = request.app.state.ctx
    report = await asyncio.to_thread(ctx.kit.status, request.path_params["address"])
    return JSONResponse(report.as_json())


async def _change(request: Request, opt_out: bool) -> Response:
    ctx: WebContext = request.app.state.ctx
    data = await _json_body(request)
    address = data.get("address")
    if not isinstance(address, str):
        return error(400, "'address' is required")
    meta = RequestMeta(
        client_ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )
    fn = ctx.kit.unsubscribe if opt_out else ctx.kit.resubscribe
    event = await asyncio.to_thread(
        fn, address, data.get("purpose"), data.get("topic"),
        brand=str(data.get("brand") or "default"), mechanism=Mechanism.API, meta=meta,
    )
    return JSONResponse(event_json(event), status_code=201)


@authorized
async def unsubscribe(request: Request) -> Response:
    return await _change(request, True)


@authorized
async def resubscribe(request: Request) -> Response:
    return await _change(request, False)


@authorized
async def headers(request: Request) -> Response:
    ctx: WebContext = request.app.state.ctx
    data = await _json_body(request)
    to, purpose = data.get("to"), data.get("purpose")
    if not isinstance(to, str) or not isinstance(purpose, str):
        return error(400, "'to' and 'purpose' are required")
    result = await asyncio.to_thread(
        ctx.kit.headers_for, to, purpose, data.get("topic"),
        brand=data.get("brand"), message_id=data.get("message_id"),
    )
    return JSONResponse(result.as_json())


@authorized
async def can_send(request: Request) -> Response:
    ctx: WebContext = request.app.state.ctx
    q = request.query_params
    address, purpose = q.get("address"), q.get("purpose")
    if not address or not purpose:
        return error(400, "'address' and 'purpose' query parameters are required")
    decision = await asyncio.to_thread(ctx.kit.can_send, address, purpose, q.get("topic"))
    return JSONResponse({"allowed": decision.allowed, "reason": decision.reason})


def api_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/consent/{address}", consent_status, methods=["GET"]),
        Route("/api/v1/unsubscribe", unsubscribe, methods=["POST"]),
        Route("/api/v1/resubscribe", resubscribe, methods=["POST"]),
        Route("/api/v1/headers", headers, methods=["POST"]),
        Route("/api/v1/can-send", can_send, methods=["GET"]),
    ]
