"""GET /api/v1/admin/records: the hub's read path to a tenant's live records, behind the read token."""

from __future__ import annotations

import uuid

import httpx
import pytest_asyncio
from asgi_lifespan import LifespanManager

from letsbe_dns.app import create_app

READ_TOKEN = "dns-read-" + uuid.uuid4().hex


@pytest_asyncio.fixture
async def reader(make_settings):
    app = create_app(make_settings(read_token=READ_TOKEN))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dns") as c:
            yield c


async def test_a_tenants_live_records_are_read_with_the_read_token(reader, bus, events, cloudflare, kit):
    event = kit.server_allocated("nextcloud")
    tenant_id = event.order.order_id
    await bus.publish(event, correlation_id=str(tenant_id))
    await events.wait("dns-ready", str(tenant_id))
    auth = {"Authorization": f"Bearer {READ_TOKEN}"}
    r = await reader.get("/api/v1/admin/records", params={"tenant_id": str(tenant_id)}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tenant_id"] == str(tenant_id)
    shown = {(x["type"], x["name"], x["content"]) for x in body["records"]}
    in_zone = {(x["type"], x["name"], x["content"]) for x in cloudflare.fake.records(kit.domain)}
    assert ("A", kit.domain, "127.0.0.10") in shown and ("A", f"*.{kit.domain}", "127.0.0.10") in shown
    assert shown <= in_zone and all(x["created"] for x in body["records"])
    other = await reader.get("/api/v1/admin/records", params={"tenant_id": str(uuid.uuid4())}, headers=auth)
    assert other.status_code == 200 and other.json()["records"] == []


async def test_the_read_api_wants_its_token_and_valid_input(reader):
    params = {"tenant_id": str(uuid.uuid4())}
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {READ_TOKEN}x"}]:
        r = await reader.get("/api/v1/admin/records", params=params, headers=headers)
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json", headers
    auth = {"Authorization": f"Bearer {READ_TOKEN}"}
    for bad in [{}, {"tenant_id": "nope"}]:
        assert (await reader.get("/api/v1/admin/records", params=bad, headers=auth)).status_code == 422


async def test_without_a_read_token_configured_the_route_is_off(client):
    r = await client.get("/api/v1/admin/records", params={"tenant_id": str(uuid.uuid4())},
                         headers={"Authorization": "Bearer anything"})
    assert r.status_code == 503 and r.json()["type"].endswith("/read-api-off")
