"""Run a service's app with uvicorn: SIGTERM drains consumers and finishes in-flight work (lifespan shutdown)."""

from __future__ import annotations

from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from letsbe_platform.settings import ServiceSettings


def serve(app_factory: Callable[[], FastAPI], settings: ServiceSettings) -> None:
    config = uvicorn.Config(
        app_factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        log_config=None,  # our structlog setup owns logging
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        lifespan="on",
    )
    uvicorn.Server(config).run()
