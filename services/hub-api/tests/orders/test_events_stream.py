"""GET /api/v1/admin/orders/{id}/events: history first, then the live tail, resumable, ending at a final state."""

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest_asyncio

from hub_testing import hub_app
from hub_testing.orders import insert_order, order_body, order_spec, post_event, serve, server_target
from letsbe_contracts.enums import FailureStage, OrderStatus, StepStatus
from letsbe_contracts.events import (
    DnsReadyV1,
    DnsRecordRef,
    ProvisionedV1,
    ProvisioningLogV1,
    ProvisioningStepV1,
    ServerAllocatedV1,
)
from letsbe_hub.app import create_app
from letsbe_hub.orders import wiring
from letsbe_hub.orders.sse_client import SseEvent, iter_sse
from letsbe_hub.orders.state import transition
from letsbe_platform.db import unit_of_work
from letsbe_platform.serve import make_server
from letsbe_platform.testing import eventually, free_port

ORDERS = "/api/v1/admin/orders"


@pytest_asyncio.fixture
async def served(hub_settings) -> AsyncIterator[str]:
    async with serve(hub_app(hub_settings, workers=wiring.start)) as url:
        yield url


class Stream:
    def __init__(self, response: httpx.Response):
        self.response = response
        self._events = iter_sse(response.aiter_lines()).__aiter__()

    async def next(self, timeout: float = 10.0) -> SseEvent:
        return await asyncio.wait_for(self._events.__anext__(), timeout)

    async def take(self, n: int) -> list[SseEvent]:
        return [await self.next() for _ in range(n)]

    async def rest(self) -> list[SseEvent]:
        """Everything until the server closes the stream."""
        out = []
        while True:
            try:
                out.append(await self.next())
            except StopAsyncIteration:
                return out


@asynccontextmanager
async def stream(url: str, headers: dict, order_id: str, last_event_id: str | None = None) -> AsyncIterator[Stream]:
    h = {**headers, **({"Last-Event-ID": last_event_id} if last_event_id else {})}
    async with (
        httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10, read=30)) as c,
        c.stream("GET", f"{ORDERS}/{order_id}/events", headers=h) as r,
    ):
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        yield Stream(r)


def _kinds(events: list[SseEvent]) -> list[str]:
    out = []
    for e in events:
        d = json.loads(e.data)
        out.append(
            {
                "status": f"status:{d.get('to')}",
                "log": f"log:{d.get('seq')}",
                "step": f"step:{d.get('status')}",
                "end": f"end:{d.get('status')}",
            }[e.event]
        )
    return out


async def test_a_late_client_gets_the_history_then_the_live_tail_until_the_order_is_fulfilled(
    served, operator, stripe_fake, bus
):
    async with httpx.AsyncClient(base_url=served) as c:
        order = (await c.post(ORDERS, json=order_body(), headers=operator)).json()
        await post_event(c, stripe_fake.fake, stripe_fake.fake.complete(order["checkout_session_id"]))
    oid, spec, server, job = order["id"], order_spec(order), server_target("hetzner", "4711"), uuid.uuid4()
    await bus.publish(ServerAllocatedV1(order=spec, server=server), correlation_id=oid)

    async def at_dns_pending():
        async with httpx.AsyncClient(base_url=served) as c:
            return (await c.get(f"{ORDERS}/{oid}", headers=operator)).json()["status"] == "DNS_PENDING"

    await eventually(at_dns_pending)

    async with stream(served, operator, oid) as s:
        history = await s.take(5)
        assert _kinds(history) == [
            "status:PENDING_PAYMENT",
            "status:PAYMENT_CONFIRMED",
            "status:AWAITING_SERVER",
            "status:SERVER_READY",
            "status:DNS_PENDING",
        ]
        first = json.loads(history[1].data)
        assert first["actor"] == "stripe" and first["from"] == "PENDING_PAYMENT" and first["order_id"] == oid

        # now live: DNS, provisioning progress, and the end
        records = (DnsRecordRef(type="A", name=spec.domain, content="127.0.0.1"),)
        await bus.publish(DnsReadyV1(order=spec, server=server, records=records), correlation_id=oid)
        assert _kinds(await s.take(2)) == ["status:DNS_READY", "status:PROVISIONING"]
        step = ProvisioningStepV1(
            order_id=oid, job_id=job, step=1, name="base-system", status=StepStatus.RUNNING, attempt=1
        )
        await bus.publish(step, correlation_id=oid)
        assert _kinds([await s.next()]) == ["step:RUNNING"]
        for i in range(3):
            await bus.publish(
                ProvisioningLogV1(
                    order_id=oid, job_id=job, step=1, seq=i, stream="stdout", line=f"apt-get install {i}"
                ),
                correlation_id=oid,
            )
        logs = await s.take(3)
        assert [json.loads(e.data)["line"] for e in logs] == [
            "apt-get install 0",
            "apt-get install 1",
            "apt-get install 2",
        ]
        await bus.publish(
            ProvisionedV1(order=spec, server=server, tenant_id=oid, job_id=job, duration_seconds=1), correlation_id=oid
        )
        tail = await s.rest()
        assert _kinds(tail) == ["status:FULFILLED", "end:FULFILLED"]
        ids = [int(e.id) for e in [*history, *logs, *tail[:1]]]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_last_event_id_resumes_after_the_last_event_seen(served, operator, sessions):
    oid = await insert_order(sessions, status=OrderStatus.DNS_READY)
    for to in (OrderStatus.PROVISIONING, OrderStatus.FAILED, OrderStatus.PROVISIONING):
        async with unit_of_work(sessions) as session:
            await transition(
                session,
                oid,
                to,
                actor="t",
                reason="x",
                stage=FailureStage.PROVISIONING if to is OrderStatus.FAILED else None,
            )
    async with stream(served, operator, str(oid)) as s:
        seen = await s.take(3)
    assert _kinds(seen) == ["status:PROVISIONING", "status:FAILED", "status:PROVISIONING"]  # FAILED does not end it
    async with unit_of_work(sessions) as session:
        await transition(session, oid, OrderStatus.CANCELLED, actor="t", reason="gave up")
    async with stream(served, operator, str(oid), last_event_id=seen[1].id) as s:
        assert _kinds(await s.rest()) == ["status:PROVISIONING", "status:CANCELLED", "end:CANCELLED"]
    # a client reconnecting after the end gets the end again, not a hanging stream
    async with stream(served, operator, str(oid), last_event_id="999999999") as s:
        assert _kinds(await s.rest()) == ["end:CANCELLED"]
    async with httpx.AsyncClient(base_url=served) as c:
        r = await c.get(f"{ORDERS}/{oid}/events", headers={**operator, "Last-Event-ID": "abc"})
        assert r.status_code == 422
        r = await c.get(f"{ORDERS}/{uuid.uuid4()}/events", headers=operator)
        assert r.status_code == 404


async def test_a_change_committed_by_another_replica_reaches_the_stream_at_once_and_idle_streams_get_pings(
    served, operator, sessions
):
    oid = await insert_order(sessions, status=OrderStatus.AWAITING_SERVER)
    async with stream(served, operator, str(oid)) as s:
        raw_lines: list[str] = []
        # Read raw lines for a while: nothing happens to the order, so only keep-alive comments arrive.
        lines = s.response.aiter_lines()
        deadline = time.monotonic() + 1.3
        while time.monotonic() < deadline:
            try:
                raw_lines.append(await asyncio.wait_for(lines.__anext__(), deadline - time.monotonic()))
            except TimeoutError:
                break
        assert any(line.startswith(": ping") for line in raw_lines), raw_lines

    # Any writer's commit (here: a session of its own, as another hub replica would) wakes the stream through
    # Postgres NOTIFY, well before the 5 s safety poll.
    async with stream(served, operator, str(oid)) as s:

        async def other_replica() -> float:
            # Not a wait for anything: the stream subscribes before it reads, so a commit at any time arrives at
            # once. The pause lets it reach its wait first, so the commit arrives by NOTIFY (what this test is about).
            await asyncio.sleep(0.3)
            async with unit_of_work(sessions) as session:
                await transition(
                    session, oid, OrderStatus.FAILED, actor="replica-b", reason="x", stage=FailureStage.ALLOCATION
                )
            return time.monotonic()

        committed = asyncio.create_task(other_replica())
        event = await s.next(timeout=10)
        received = time.monotonic()
        assert _kinds([event]) == ["status:FAILED"]
        assert received - await committed < 2.0


async def test_an_open_stream_ends_when_the_hub_shuts_down_not_when_its_grace_period_does(
    hub_settings, operator, sessions
):
    settings = hub_settings.model_copy(update={"port": free_port(), "shutdown_grace_seconds": 30})
    server = make_server(lambda: create_app(settings), settings)  # as `letsbe-hub-api` runs in production
    task = asyncio.create_task(server.serve())
    oid = await insert_order(sessions, status=OrderStatus.PROVISIONING)
    try:
        await eventually(lambda: server.started or task.done(), "the hub is serving", timeout=30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}", headers=operator) as c:
            async with c.stream("GET", f"{ORDERS}/{oid}/events", timeout=60) as r:
                assert r.status_code == 200
                server.should_exit = True  # what SIGTERM does
                asked = time.monotonic()
                # The connection is cut (a client resumes with Last-Event-ID, on another replica if there is one).
                with contextlib.suppress(httpx.RemoteProtocolError):
                    async for _ in r.aiter_lines():
                        pass
            await asyncio.wait_for(task, 60)
        assert time.monotonic() - asked < 10, "the shutdown waited out its grace period for an open stream"
    finally:
        server.should_exit = True
        if not task.done():
            await asyncio.wait_for(task, 60)
