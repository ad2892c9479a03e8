"""The hub's test support: fixtures and helpers its tests (and the cross-service tests under tests/) import.

Kept outside ``src`` so the hub's package never ships pytest or the fakes; pytest finds it through ``pythonpath``
in the root pyproject.toml.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from letsbe_hub import web
from letsbe_hub.app import ROUTERS
from letsbe_hub.config import HubSettings
from letsbe_hub.db import SCHEMA
from letsbe_platform.web import Runtime, create_service_app, runtime

# Idle apps by their routers. FastAPI (0.165) builds each included route's handler, dependency tree and field models
# lazily at an app's first request (~80 ms for the hub's routes), so a fresh app per test paid that at every test;
# an app whose lifespan has ended is handed out again instead, with the new test's lifespan and an empty state.
# (Keyed by the routers' ids: an idle app includes its routers, so none of them is freed and its id reused.)
_idle: dict[tuple[int, ...], list[FastAPI]] = {}
_lifespans: weakref.WeakKeyDictionary[FastAPI, Callable[[FastAPI], AbstractAsyncContextManager[None]]] = (
    weakref.WeakKeyDictionary()
)


def hub_app(
    settings: HubSettings,
    *,
    routers: Sequence[APIRouter] = ROUTERS,
    workers: Callable[[Runtime, HubSettings], Any] | None = None,
) -> FastAPI:
    """The hub's routes (all, or one context's) with the shared problem+json/auth behaviour and a database.

    Only with ``workers`` does it connect the bus and run the outbox relay and those workers (``workers(rt,
    settings)``; what it returns is ``app.state.workers``), so a test sees exactly what one context does, with no
    other worker moving rows behind its back.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(settings, bus=workers is not None) as rt:
            app.state.runtime = rt
            app.state.settings = settings
            if workers is not None:
                rt.relay_outbox(SCHEMA, poll_seconds=0.2)
                app.state.workers = workers(rt, settings)
            yield

    idle = _idle.setdefault(tuple(map(id, routers)), [])
    app = idle.pop() if idle else _new_app(list(routers), idle)
    _lifespans[app] = lifespan
    return app


def _new_app(routers: list[APIRouter], idle: list[FastAPI]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app in idle:  # started again without being handed out again
            idle.remove(app)
        app.state._state.clear()  # nothing of the previous test (a rate limiter, its runtime) survives
        try:
            async with _lifespans[app](app):
                yield
        finally:
            idle.append(app)

    app = create_service_app(title="hub (tests)", version="test", lifespan=lifespan, routers=routers)
    web.install(app)
    return app
