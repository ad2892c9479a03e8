"""A served app sees the connection as it is: a loopback client cannot name another address or scheme with
X-Forwarded-For / X-Forwarded-Proto (uvicorn believes those from loopback unless told not to); which proxy to believe
is the service's own setting."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from letsbe_platform import devstack
from letsbe_platform.serve import make_server
from letsbe_platform.settings import ServiceSettings
from letsbe_platform.testing import eventually


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"client": request.client.host if request.client else None, "scheme": request.url.scheme})


async def test_the_app_sees_the_tcp_peer_whatever_forwarding_headers_a_loopback_client_sends():
    settings = ServiceSettings.model_validate({"log_json": False, "port": devstack.free_port()})
    server = make_server(lambda: Starlette(routes=[Route("/whoami", whoami)]), settings)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, "the server started", timeout=20)
        headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Real-IP": "203.0.113.8"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}") as client:
            seen = (await client.get("/whoami", headers=headers)).json()
        assert seen == {"client": "127.0.0.1", "scheme": "http"}
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
