"""A service asked to stop does not sit out its grace period for its long-lived requests: when uvicorn begins to shut
down, the app's ``Runtime.stopping`` is set, and a long-poll that watches it answers at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import APIRouter, FastAPI

from letsbe_platform import devstack
from letsbe_platform.serve import make_server
from letsbe_platform.settings import ServiceSettings
from letsbe_platform.testing import eventually
from letsbe_platform.web import RuntimeDep, create_service_app, runtime

router = APIRouter(prefix="/p", tags=["p"])
polling = asyncio.Event()


@router.get("/poll", name="poll")
async def poll(rt: RuntimeDep) -> dict:
    """Like the agents' command long-poll: waits for work (never comes here) or the end of the process."""
    polling.set()
    async with asyncio.timeout(30):
        await rt.stopping.wait()
    return {"stopping": True}


async def test_a_long_poll_answers_when_shutdown_begins_not_when_the_grace_period_ends():
    settings = ServiceSettings.model_validate(
        {"log_json": False, "port": devstack.free_port(), "shutdown_grace_seconds": 20}
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(settings, database=False, bus=False) as rt:
            app.state.runtime = rt
            yield

    server = make_server(
        lambda: create_service_app(title="p", version="1", lifespan=lifespan, routers=[router]), settings
    )
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, "the server started", timeout=20)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}", timeout=30) as c:
            waiting = asyncio.create_task(c.get("/p/poll"))
            await asyncio.wait_for(polling.wait(), 10)
            server.should_exit = True  # what SIGTERM does
            loop = asyncio.get_running_loop()
            asked = loop.time()
            r = await waiting
            assert r.status_code == 200 and r.json() == {"stopping": True}
            await asyncio.wait_for(task, 10)
            assert loop.time() - asked < 5, "the shutdown waited for the long-poll"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
