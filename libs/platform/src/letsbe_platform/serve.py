"""Run a service's app with uvicorn: SIGTERM drains consumers and finishes in-flight work (lifespan shutdown)."""

from __future__ import annotations

from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from letsbe_platform.settings import ServiceSettings


def serve(app_factory: Callable[[], FastAPI], settings: ServiceSettings, *, lean: bool = False) -> None:
    """``lean``: the tenant agents, which live under a small memory limit, run on the standard asyncio loop
    (uvloop costs about 2.5 MB resident, and their request rates do not need it). No service speaks WebSocket,
    so uvicorn never loads a WebSocket implementation (about 2 MB)."""
    config = uvicorn.Config(
        app_factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        log_config=None,  # our structlog setup owns logging
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        lifespan="on",
        ws="none",
        loop="asyncio" if lean else "auto",
    )
    uvicorn.Server(config).run()
