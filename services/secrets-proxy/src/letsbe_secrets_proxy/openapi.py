"""The Secrets Proxy's OpenAPI document, from a FastAPI description of the routes it serves.

The proxy itself runs on plain Starlette (``letsbe_platform.asgi.create_agent_app``: FastAPI would cost about 8 MB
of its 64 MB). The document is what FastAPI makes of the same endpoints, with the same shared parts as every other
service (health, readiness, metrics, the Problem responses, the size limits); it is built here only when someone
asks for it (``/openapi.json``, the contract tests), and the contract tests check it against the running proxy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.security import HTTPBearer

from letsbe_platform.web import create_service_app, problems
from letsbe_secrets_proxy import __version__
from letsbe_secrets_proxy.proxy.endpoints import LLM_PATHS, LLM_PROBLEMS, ROUTES

TITLE = "LetsBe Secrets Proxy"
SENTINEL_KEY = HTTPBearer(
    scheme_name="sentinelKey", auto_error=False, description="The agent's sentinel key (not a real provider key)"
)


def routers() -> list[APIRouter]:
    router = APIRouter(tags=["llm"])
    for route in ROUTES:
        router.add_api_route(route.path, route.endpoint, methods=sorted(route.methods - {"HEAD"}), name=route.name,
                             dependencies=[Depends(SENTINEL_KEY)], responses=problems(*LLM_PROBLEMS))
    return [router]


@asynccontextmanager
async def _never_started(app: FastAPI) -> AsyncIterator[None]:
    yield


def document() -> dict[str, Any]:
    app = create_service_app(title=TITLE, version=__version__, lifespan=_never_started, routers=routers(),
                             body_limits=dict.fromkeys(LLM_PATHS), dependencies=False)
    return app.openapi()
