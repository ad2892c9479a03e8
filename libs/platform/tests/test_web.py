"""The shared app behaviour every service inherits: health, readiness, problem+json, sessions, metrics."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field
from sqlalchemy import text

from letsbe_contracts.events import TenantHeartbeatV1
from letsbe_platform.errors import Conflict
from letsbe_platform.settings import ServiceSettings
from letsbe_platform.web import SessionDep, Slot, create_service_app, runtime

router = APIRouter(prefix="/things", tags=["things"])


class ThingCreate(BaseModel):
    name: str = Field(min_length=1, max_length=20)
    api_key: str


@router.post("", name="create", status_code=201)
async def create(body: ThingCreate, session: SessionDep) -> dict:
    await session.execute(text("INSERT INTO public.things (name) VALUES (:n)"), {"n": body.name})
    if body.name == "taken":
        raise Conflict("A thing with that name exists.", name=body.name)
    return {"name": body.name}


@router.get("/boom", name="boom")
async def boom() -> dict:
    raise RuntimeError("secret internals")


def make_app(database_url: str | None, nats_url: str | None, ns: str) -> FastAPI:
    settings = ServiceSettings.model_validate(
        {"DATABASE_URL": database_url, "NATS_URL": nats_url, "LETSBE_BUS_NAMESPACE": ns, "log_json": False}
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(settings, database=database_url is not None, bus=nats_url is not None) as rt:
            app.state.runtime = rt
            yield

    return create_service_app(title="t", version="1", lifespan=lifespan, routers=[router])


async def client_for(app: FastAPI):
    manager = LifespanManager(app)
    await manager.__aenter__()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://t")
    return manager, client


async def test_health_readiness_and_metrics(database_url, nats_url, bus_namespace, engine):
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE public.things (name text)"))
    app = make_app(database_url, nats_url, bus_namespace)
    async with (
        LifespanManager(app) as m,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=m.app), base_url="http://t") as c,
    ):
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        ready = await c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"postgres": "ok", "nats": "ok"}
        assert (await c.post("/things", json={"name": "a", "api_key": "k"})).status_code == 201
        metrics = (await c.get("/metrics")).text
        assert 'http_request_duration_seconds_count{method="POST",route="/things",status="201"}' in metrics
        assert "db_pool_size" in metrics


async def test_readiness_reports_an_unreachable_database(nats_url, bus_namespace):
    app = make_app("postgresql://nobody@127.0.0.1:1/none", nats_url, bus_namespace)
    async with (
        LifespanManager(app) as m,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=m.app), base_url="http://t") as c,
    ):
        r = await c.get("/readyz")
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["checks"]["postgres"].startswith("error")
        assert (await c.get("/healthz")).status_code == 200  # the process itself is fine


async def test_a_runtime_without_a_database_or_bus_says_so_at_the_first_use(database_url, bus_namespace):
    settings = ServiceSettings.model_validate(
        {"DATABASE_URL": database_url, "LETSBE_BUS_NAMESPACE": bus_namespace, "log_json": False}
    )
    async with runtime(settings, bus=False) as rt:
        assert rt.has_database and not rt.has_bus and rt.database_url == database_url
        async with rt.sessions() as session:
            assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
        with pytest.raises(RuntimeError, match="runs without NATS"):
            rt.consume("nobody", TenantHeartbeatV1, lambda event, delivery: None)
        assert await rt.ready() == {"postgres": "ok"}
        # A context keeps its own part on the runtime; another slot, even of the same type, is another place.
        orders, billing = Slot[list[str]]("orders"), Slot[list[str]]("orders")
        kept = rt.attach(orders, ["order"])
        assert rt.part(orders) is kept and rt.part(billing) is None
    async with runtime(settings, database=False, bus=False) as rt:
        for missing in ("engine", "sessions", "database_url"):
            with pytest.raises(RuntimeError, match="runs without a database"):
                getattr(rt, missing)


async def test_errors_are_problem_json_and_a_failed_request_writes_nothing(database_url, bus_namespace, engine):
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE public.things (name text)"))
    app = make_app(database_url, None, bus_namespace)
    async with (
        LifespanManager(app) as m,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=m.app, raise_app_exceptions=False), base_url="http://t"
        ) as c,
    ):
        conflict = await c.post("/things", json={"name": "taken", "api_key": "k"})
        assert conflict.status_code == 409
        assert conflict.headers["content-type"] == "application/problem+json"
        body = conflict.json()
        assert body["type"].endswith("/conflict") and body["status"] == 409 and body["name"] == "taken"
        assert body["instance"] == "/things"

        invalid = await c.post("/things", json={"name": "", "api_key": "sk_live_supersecret"})
        assert invalid.status_code == 422 and invalid.headers["content-type"] == "application/problem+json"
        assert invalid.json()["errors"][0]["loc"] == ["body", "name"]
        assert "sk_live_supersecret" not in invalid.text  # input is never echoed back

        crash = await c.get("/things/boom")
        assert crash.status_code == 500 and "secret internals" not in crash.text

        missing = await c.get("/nowhere")
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM public.things"))).scalar_one() == 0


async def test_openapi_operation_ids_are_tag_and_name():
    app = make_app(None, None, "x")
    ids = {op["operationId"] for path in app.openapi()["paths"].values() for op in path.values()}
    assert {"things-create", "ops-healthz", "ops-readyz"} <= ids


def test_problem_extensions_cannot_overwrite_the_standard_members():
    import pytest

    with pytest.raises(ValueError, match="status"):
        Conflict("The command is already SUCCEEDED.", status="SUCCEEDED")
    body = Conflict("The command is already SUCCEEDED.", current_status="SUCCEEDED").problem("/x")
    assert body["status"] == 409 and body["current_status"] == "SUCCEEDED"
