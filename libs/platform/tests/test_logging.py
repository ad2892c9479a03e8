"""What a log line says about where it comes from: the service always, the request id within a request, the
event and its chain's correlation id within an event handler."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI, Response

from letsbe_contracts import OrderCreatedV1, OrderSpec
from letsbe_platform.bus import Bus, Delivery
from letsbe_platform.logging import configure_logging, get_logger
from letsbe_platform.settings import ServiceSettings
from letsbe_platform.web import create_service_app, runtime

log = get_logger("test")
router = APIRouter(prefix="/things", tags=["things"])


@router.post("", name="create")
async def create(body: dict) -> dict:
    log.info("thing created")
    # A line from a thread that inherited no context at all still names its service.
    thread = threading.Thread(target=lambda: logging.getLogger("some.library").warning("library line"))
    thread.start()
    thread.join()
    return {}


class Lines:
    """What the service writes to stdout, as configure_logging set it up (its handler's stream, redirected)."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        [handler] = logging.getLogger().handlers
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(self.stream)

    def read(self) -> list[dict]:
        text = self.stream.getvalue()
        self.stream.seek(0)
        self.stream.truncate()
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, Lines]]:
    settings = ServiceSettings.model_validate({"service_name": "things", "log_json": True})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(settings, database=False, bus=False) as rt:
            app.state.runtime = rt
            yield

    app = create_service_app(title="t", version="1", lifespan=lifespan, routers=[router], dependencies=False)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c, Lines()


async def test_a_request_s_lines_carry_the_service_and_the_caller_s_request_id(client):
    client, logs = client
    r = await client.post("/things", json={}, headers={"X-Request-ID": "nginx-5f2b9c"})
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "nginx-5f2b9c"
    out = logs.read()
    created = next(line for line in out if line["event"] == "thing created")
    assert created["service"] == "things" and created["request_id"] == "nginx-5f2b9c"
    library = next(line for line in out if line["event"] == "library line")
    assert library["service"] == "things" and "request_id" not in library


@pytest.mark.parametrize("given", [None, "", "has space", "a" * 129, "ümlaut", "-leading-dash", "x\ty"])
async def test_a_missing_or_implausible_request_id_is_replaced_by_a_new_one(client, given):
    client, logs = client
    headers = {} if given is None else {"X-Request-ID": given.encode()}
    r = await client.post("/things", json={}, headers=headers)
    rid = r.headers["X-Request-ID"]
    assert rid != given and len(rid) == 32 and int(rid, 16) >= 0
    assert next(line for line in logs.read() if line["event"] == "thing created")["request_id"] == rid


async def test_every_answer_carries_the_request_id_even_a_refused_body(client):
    client, _ = client
    r = await client.post("/things", content=b"x" * (2 * 1024 * 1024), headers={"X-Request-ID": "big-1"})
    assert r.status_code == 413 and r.headers["X-Request-ID"] == "big-1"
    r = await client.get("/nowhere", headers={"X-Request-ID": "lost-1"})
    assert r.status_code == 404 and r.headers["X-Request-ID"] == "lost-1"


def _order_created() -> OrderCreatedV1:
    spec = OrderSpec(
        order_id=uuid.uuid4(),
        domain="example.com",
        tier="build",
        region="eu",
        tools=("ghost",),
        automation_mode="AUTO",
        customer_email="a@example.com",
    )
    return OrderCreatedV1(order=spec)


async def test_an_event_handler_s_lines_carry_the_event_and_its_correlation_id(bus: Bus):
    configure_logging("hub", json=True)
    logs = Lines()
    handled: list[str] = []

    async def handle(event: OrderCreatedV1, delivery: Delivery) -> None:
        log.info("handling order", order_id=str(event.order.order_id))
        handled.append(delivery.correlation_id)

    first = await bus.publish(_order_created(), correlation_id="chain-1")
    second = await bus.publish(_order_created(), correlation_id="chain-2")
    await bus.publish_raw(OrderCreatedV1.SUBJECT, b"not json", msg_id=str(uuid.uuid4()))
    consumer = bus.consumer("test-logs-on-order-created", OrderCreatedV1, handle)
    task = asyncio.create_task(consumer.run())
    out: list[dict] = []
    try:
        async with asyncio.timeout(10):
            while len(handled) < 2 or not any(line["event"] == "event dead-lettered" for line in out):
                await asyncio.sleep(0.02)
                out += logs.read()
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 5)
    handling = [line for line in out if line["event"] == "handling order"]
    assert [(h["correlation_id"], h["event_id"]) for h in handling] == [
        ("chain-1", str(first.id)),
        ("chain-2", str(second.id)),
    ]
    assert all(h["service"] == "hub" and h["consumer"] == "test-logs-on-order-created" for h in handling)
    assert all(h["event_type"] == "order-created" for h in handling)
    # The undecodable message that followed does not inherit the previous event's ids.
    dead = next(line for line in out if line["event"] == "event dead-lettered")
    assert dead["consumer"] == "test-logs-on-order-created"
    assert "correlation_id" not in dead and "event_id" not in dead



@router.get("/own-id", name="own_id")
async def own_id() -> Response:
    return Response(headers={"X-Request-ID": "req_upstream42"})


async def test_a_route_s_own_request_id_header_is_kept(client):
    """The secrets proxy passes the LLM provider's x-request-id on to the agent; it is not overwritten."""
    client, _ = client
    r = await client.get("/things/own-id", headers={"X-Request-ID": "mine-1"})
    assert r.headers.get_list("X-Request-ID") == ["req_upstream42"]
