"""What every service inherits so that bad input and outages never answer 500: body and header size caps (413, 431),
503 with Retry-After while Postgres or NATS is down, 400 for a value Postgres refuses."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import uvicorn
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI, Request
from sqlalchemy import text

from letsbe_platform import devstack
from letsbe_platform.errors import PROBLEM_JSON
from letsbe_platform.serve import uvicorn_config
from letsbe_platform.settings import ServiceSettings
from letsbe_platform.testing import free_port
from letsbe_platform.web import RuntimeDep, SessionDep, create_service_app, runtime

router = APIRouter(prefix="/g", tags=["g"])


@router.post("/echo", name="echo")
async def echo(request: Request) -> dict:
    return {"size": len(await request.body())}


@router.post("/big", name="big")
async def big(request: Request) -> dict:
    return {"size": len(await request.body())}


@router.get("/count", name="count")
async def count(session: SessionDep, at_least: int = 0) -> dict:
    # A value Postgres cannot take (bigint overflow) is the client's mistake: 400, not 500.
    return {"n": (await session.execute(text("SELECT CAST(:n AS bigint)"), {"n": at_least})).scalar_one()}


@router.post("/publish", name="publish")
async def publish(rt: RuntimeDep) -> dict:
    await rt.bus.js.publish(rt.bus.subject("letsbe.guard.test.v1"), b"x", timeout=1)
    return {"ok": True}


def make_app(database_url: str | None, nats_url: str | None, ns: str = "guards", **overrides) -> FastAPI:
    settings = ServiceSettings.model_validate(
        {"DATABASE_URL": database_url, "NATS_URL": nats_url, "LETSBE_BUS_NAMESPACE": ns, "log_json": False}
        | overrides
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(settings, database=database_url is not None, bus=nats_url is not None) as rt:
            app.state.runtime = rt
            yield

    return create_service_app(
        title="g", version="1", lifespan=lifespan, routers=[router], body_limits={"/g/big": 4 * 1024 * 1024}
    )


@asynccontextmanager
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        LifespanManager(app) as m,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=m.app, raise_app_exceptions=False), base_url="http://t"
        ) as c,
    ):
        yield c


def assert_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    body = r.json()
    assert body["status"] == status
    return body


async def test_a_body_over_the_limit_is_413_whether_declared_or_streamed():
    async with client(make_app(None, None, max_body_bytes=64 * 1024)) as c:
        assert (await c.post("/g/echo", content=b"x" * 64 * 1024)).json() == {"size": 64 * 1024}
        declared = await c.post("/g/echo", content=b"x" * (64 * 1024 + 1))
        assert assert_problem(declared, 413)["detail"] == "The request body is limited to 65536 bytes."

        async def chunks():
            for _ in range(100):
                yield b"y" * 1024

        streamed = await c.post("/g/echo", content=chunks())  # no Content-Length: counted as it arrives
        assert_problem(streamed, 413)
        # a route that needs more says so; the rest keep the default
        assert (await c.post("/g/big", content=b"z" * 3 * 1024 * 1024)).json() == {"size": 3 * 1024 * 1024}
        assert_problem(await c.post("/g/big", content=b"z" * (4 * 1024 * 1024 + 1)), 413)
        # even a route that never reads its body, and one that does not exist
        assert_problem(await c.post("/healthz", content=b"x" * 100_000), 413)


async def test_while_postgres_is_down_requests_get_503_with_retry_after():
    app = make_app("postgresql://nobody@127.0.0.1:1/none", None)
    async with client(app) as c:
        r = await c.get("/g/count")
        body = assert_problem(r, 503)
        assert r.headers["retry-after"] == "5"
        assert body["type"].endswith("/unavailable")


async def test_while_nats_is_down_requests_get_503():
    root = Path(tempfile.mkdtemp(prefix="guards-nats-"))
    nats = devstack.Nats(root, free_port(), free_port())
    nats.start()
    try:
        async with client(make_app(None, nats.url)) as c:
            nats.stop()
            r = await c.post("/g/publish")
            assert_problem(r, 503)
            assert r.headers["retry-after"] == "5"
    finally:
        nats.stop()


async def test_a_value_postgres_refuses_is_400(database_url):
    async with client(make_app(database_url, None)) as c:
        assert (await c.get("/g/count", params={"at_least": 3})).json() == {"n": 3}
        body = assert_problem(await c.get("/g/count", params={"at_least": 2**64}), 400)
        assert body["type"].endswith("/invalid-input")


async def test_request_headers_over_the_limit_are_431():
    settings = ServiceSettings.model_validate({"log_json": False, "port": free_port()})
    config = uvicorn_config(lambda: make_app(None, None), settings)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(20):
            while not server.started:
                await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}") as c:
            assert (await c.get("/healthz", headers={"X-Small": "a" * 1000})).status_code == 200
            r = await c.get("/healthz", headers={"X-Big": "a" * 1024 * 1024})
            assert_problem(r, 431)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


def test_the_header_limit_comes_from_settings():
    settings = ServiceSettings.model_validate({"max_header_bytes": 8192})
    assert uvicorn_config(lambda: FastAPI(), settings).h11_max_incomplete_event_size == 8192
