"""Custom handlers: Python callables run for consent events, through the outbox.

A handler is named in the settings either by entry point (group ``unsubkit.handlers``, e.g. a
package declaring ``[project.entry-points."unsubkit.handlers"] crm = "mypkg.crm:on_event"``)
or directly as ``module:function``. It is called with the same JSON payload a webhook gets
(a ``dict``), after the event is committed; a plain function runs in a thread, an ``async def``
on the worker's loop. Raising (or overrunning the timeout) fails the attempt: it is retried
with the same backoff as a webhook and ends in the dead letters, never blocking the opt-out.

A timed-out plain function cannot be killed: its thread runs on. Keep handlers short, or give
them their own timeouts on the calls they make.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from ..errors import WebhookError

__all__ = ["GROUP", "Handler", "HandlerRegistry", "load_handler"]

GROUP = "unsubkit.handlers"

Handler = Callable[[dict[str, Any]], Any]


def load_handler(spec: str) -> Handler:
    """Resolve ``module:function`` (attribute path allowed) or an entry point name."""
    spec = spec.strip()
    if not spec:
        raise WebhookError("empty handler name")
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except ImportError as exc:
            raise WebhookError(f"handler {spec!r}: cannot import {module_name!r} ({exc})") from None
        except AttributeError:
            raise WebhookError(f"handler {spec!r}: {module_name!r} has no {attr!r}") from None
    else:
        found = list(entry_points(group=GROUP, name=spec))
        if not found:
            raise WebhookError(f"no handler {spec!r} in entry point group {GROUP!r} (or use module:function)")
        try:
            obj = found[0].load()
        except Exception as exc:  # noqa: BLE001 - third-party import failures of any kind
            raise WebhookError(f"handler {spec!r}: cannot load entry point ({type(exc).__name__}: {exc})") from None
    if not callable(obj):
        raise WebhookError(f"handler {spec!r} is not callable")
    handler: Handler = obj
    return handler


class HandlerRegistry:
    """Loads each handler once and calls it with a timeout."""

    def __init__(self, loader: Callable[[str], Handler] = load_handler) -> None:
        self._loader = loader
        self._cache: dict[str, Handler] = {}

    def get(self, spec: str) -> Handler:
        fn = self._cache.get(spec)
        if fn is None:
            fn = self._cache[spec] = self._loader(spec)
        return fn

    def check(self, specs: list[str]) -> list[str]:
        """Problems loading ``specs`` (one line each), for a warning at start-up."""
        problems = []
        for spec in specs:
            try:
                self.get(spec)
            except WebhookError as exc:
                problems.append(str(exc))
        return problems

    async def call(self, spec: str, payload: dict[str, Any], *, timeout: float) -> None:
        fn = self.get(spec)
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None)):  # noqa: B004
            await asyncio.wait_for(fn(payload), timeout)
        else:
            result = await asyncio.wait_for(asyncio.to_thread(fn, payload), timeout)
            if inspect.isawaitable(result):
                await asyncio.wait_for(result, timeout)
