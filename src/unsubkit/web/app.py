"""The ASGI application factory. ``create_app`` takes a built :class:`Unsubkit`; nothing here
reads the environment. Background services (SMTP listener, webhook worker) are passed in as
async context manager factories and run for the app's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..service import Unsubkit
from .api import api_routes
from .context import Metrics, WebContext
from .oneclick import one_click_get, one_click_post
from .pages import make_templates, preference_get, preference_post
from .webhooks_api import webhook_routes
from .writer import GroupCommitWriter, Writer

__all__ = ["BackgroundService", "create_app"]

#: A factory for something that runs beside the web app (started and stopped with it).
BackgroundService = Callable[[Unsubkit, Writer], AbstractAsyncContextManager[Any]]


async def healthz(request: Request) -> Response:
    ctx: WebContext = request.app.state.ctx

    def ping() -> None:
        with ctx.kit.store.engine.connect() as conn:  # type: ignore[attr-defined]
            conn.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(asyncio.to_thread(ping), timeout=5)
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
        return JSONResponse({"status": "error", "database": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    ctx: WebContext = request.app.state.ctx
    ctx.metrics.batches.set(ctx.writer.batches)
    ctx.metrics.committed.set(ctx.writer.committed)
    ctx.metrics.writer_restarts.set(getattr(ctx.writer, "restarts", 0))
    return PlainTextResponse(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def not_allowed(request: Request) -> Response:
    return PlainTextResponse("method not allowed\n", status_code=405, headers={"Allow": "GET, HEAD, POST"})


def create_app(kit: Unsubkit, *, services: Sequence[BackgroundService] = ()) -> Starlette:
    settings = kit.settings
    writer: Writer
    if settings.writer == "process":
        from .procwriter import ProcessWriter  # not at import time: the child runs that module

        writer = ProcessWriter(settings, max_batch=settings.max_batch)
    else:
        writer = GroupCommitWriter(kit.record, max_batch=settings.max_batch)
    ctx = WebContext(kit=kit, settings=settings, writer=writer, templates=make_templates(), metrics=Metrics())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await writer.start()
        try:
            # Services stop first (the mailto listener finishes its sessions through the writer),
            # then the writer finishes what it accepted.
            async with contextlib.AsyncExitStack() as stack:
                for factory in services:
                    await stack.enter_async_context(factory(kit, writer))
                # What start-up loaded (modules, templates, compiled SQL) lives as long as the
                # server. Frozen, full collections stop walking it every time: they were the
                # one-click endpoint's worst latencies (docs/performance.md).
                gc.collect()
                gc.freeze()
                yield
        finally:
            await writer.stop()

    routes = [
        Route("/u/{token}", one_click_post, methods=["POST"]),
        Route("/u/{token}", one_click_get, methods=["GET", "HEAD"]),
        Route("/u/{token}", not_allowed, methods=["PUT", "DELETE", "PATCH"]),
        Route("/p/{token}", preference_get, methods=["GET", "HEAD"]),
        Route("/p/{token}", preference_post, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET"]),
        *api_routes(),
        *webhook_routes(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.ctx = ctx
    return app
