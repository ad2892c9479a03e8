"""The admin API: /api/v1/admin/servers… and /api/v1/admin/pools… (problem+json errors, scopes)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from hub_testing import hub_app
from hub_testing.servers import FINGERPRINT, add_servers, order_spec, servers_settings, staged, token
from letsbe_contracts import ServerAllocatedV1
from letsbe_fakes import LoopbackServer
from letsbe_fakes.netcup import FakeNetcup
from letsbe_hub.app import create_app
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.servers import endpoints
from letsbe_hub.servers.allocation import Outcome
from letsbe_hub.servers.models import InventoryStatus, Server

BASE = "/api/v1/admin/servers"


def _new(**overrides):
    body = {
        "provider_ref": uuid.uuid4().hex[:10],
        "tier": "build",
        "region": "eu",
        "ipv4": "203.0.113.7",
        "host_key_fingerprint": FINGERPRINT,
        "contract_end": "2027-11-30",
    }
    body.update(overrides)
    return body


async def test_registering_a_pool_server_makes_it_available(api, admin):
    r = await api.post(BASE, json=_new(provider_ref="4242", name="rs2000-eu-1"), headers=admin)
    assert r.status_code == 201, r.text
    server = r.json()
    assert (server["status"], server["provider"], server["billing"]) == ("AVAILABLE", "netcup", "12-month contract")
    assert server["contract_end"] == "2027-11-30" and server["registered_by"] == "servers-test"  # the token's name
    got = await api.get(f"{BASE}/{server['id']}", headers=admin)
    assert got.json() == server


async def test_registering_the_same_provider_server_twice_is_a_conflict(api, admin):
    assert (await api.post(BASE, json=_new(provider_ref="77"), headers=admin)).status_code == 201
    r = await api.post(BASE, json=_new(provider_ref="77"), headers=admin)
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/server-conflict")


@pytest.mark.parametrize(
    "bad",
    [
        {"tier": "huge"},
        {"ipv4": "999.1.1.1"},
        {"host_key_fingerprint": "MD5:aa"},
        {"provider_ref": "a b"},
        {"unexpected": 1},
    ],
)
async def test_invalid_registrations_are_422_and_change_nothing(api, admin, sessions, bad):
    r = await api.post(BASE, json=_new(**bad), headers=admin)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    async with sessions() as s:
        assert (await s.execute(select(Server))).first() is None


async def test_the_host_key_is_read_from_the_server_when_not_given(api, admin, ssh_target):
    body = _new(ipv4="127.0.0.1", ssh_port=ssh_target.port)
    del body["host_key_fingerprint"]
    r = await api.post(BASE, json=body, headers=admin)
    assert r.status_code == 201 and r.json()["host_key_fingerprint"] == ssh_target.fingerprint
    body.update(provider_ref="other", ssh_port=1)
    r = await api.post(BASE, json=body, headers=admin)
    assert r.status_code == 422 and r.json()["type"].endswith("/host-key-unreadable")


async def test_listing_filters_and_pages(api, admin, sessions):
    await add_servers(sessions, 3, region="eu")
    await add_servers(sessions, 2, region="us", status=InventoryStatus.IN_USE)
    page = (await api.get(BASE, params={"region": "eu", "limit": 2}, headers=admin)).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = (await api.get(BASE, params={"region": "eu", "limit": 2, "cursor": page["next_cursor"]}, headers=admin))
    assert len(rest.json()["items"]) == 1 and rest.json()["next_cursor"] is None
    in_use = (await api.get(BASE, params={"status": "IN_USE"}, headers=admin)).json()
    assert len(in_use["items"]) == 2 and {i["region"] for i in in_use["items"]} == {"us"}
    assert (await api.get(BASE, params={"status": "BROKEN"}, headers=admin)).status_code == 422


async def test_retiring_follows_the_servers_state(api, admin, sessions):
    [available] = await add_servers(sessions, 1)
    [in_use] = await add_servers(sessions, 1, status=InventoryStatus.IN_USE, order_id=uuid.uuid4())
    [reserved] = await add_servers(sessions, 1, status=InventoryStatus.RESERVED, order_id=uuid.uuid4())
    r = await api.post(f"{BASE}/{available.id}/retire", headers=admin)
    assert r.json()["status"] == "RETIRED" and r.json()["retired_at"] and r.json()["retired_by"] == "servers-test"
    assert (await api.post(f"{BASE}/{in_use.id}/retire", headers=admin)).json()["status"] == "DRAINING"
    r = await api.post(f"{BASE}/{reserved.id}/retire", headers=admin)
    assert r.status_code == 409
    assert (await api.post(f"{BASE}/{uuid.uuid4()}/retire", headers=admin)).status_code == 404


async def test_retiring_a_hetzner_server_deletes_it_at_hetzner(api, admin, allocator, fake_hetzner, sessions):
    fake, _ = fake_hetzner
    assert await allocator.allocate(order_spec(), uuid.uuid4()) is Outcome.OVERFLOW
    async with sessions() as s:
        server = (await s.execute(select(Server))).scalar_one()
        server_id = server.id
    async with sessions() as s, s.begin():
        server = await s.get(Server, server_id)
        server.status = "AVAILABLE"  # say the order was cancelled and the server released
    assert (await api.post(f"{BASE}/{server_id}/retire", headers=admin)).json()["status"] == "RETIRED"
    assert fake.servers == {} and len(fake.deleted) == 1


async def test_an_operator_assigns_a_held_manual_order_which_then_allocates(api, admin, allocator, sessions):
    order = order_spec(mode="MANUAL")
    assert await allocator.allocate(order, uuid.uuid4()) is Outcome.HELD
    held = (await api.get(f"{BASE}/held", headers=admin)).json()["items"]
    assert [(h["order_id"], h["status"], h["domain"]) for h in held] == [(str(order.order_id), "HELD", order.domain)]

    r = await api.post(f"{BASE}/held/{order.order_id}/assign", json={}, headers=admin)
    assert r.status_code == 409 and r.json()["type"].endswith("/no-server-available")
    [wrong] = await add_servers(sessions, 1, region="us")
    r = await api.post(f"{BASE}/held/{order.order_id}/assign", json={"server_id": str(wrong.id)}, headers=admin)
    assert r.status_code == 409

    [right] = await add_servers(sessions, 1, region="eu")
    r = await api.post(f"{BASE}/held/{order.order_id}/assign", json={"server_id": str(right.id)}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["server"]["status"] == "RESERVED" and r.json()["server"]["order_id"] == str(order.order_id)
    [(env, event)] = await staged(sessions, ServerAllocatedV1)
    assert event.order == order and event.server.server_id == right.id and env.correlation_id == str(order.order_id)
    assert (await api.get(f"{BASE}/held", headers=admin)).json() == {"items": [], "next_cursor": None}
    assert (await api.post(f"{BASE}/held/{order.order_id}/assign", json={}, headers=admin)).status_code == 409
    assert (await api.post(f"{BASE}/held/{uuid.uuid4()}/assign", json={}, headers=admin)).status_code == 404


async def test_pool_sizes_are_validated_and_set(api, admin):
    r = await api.put("/api/v1/admin/pools/scale/us", json={"min_available": 3, "target_available": 2}, headers=admin)
    assert r.status_code == 422
    r = await api.put("/api/v1/admin/pools/scale/us", json={"min_available": 1, "target_available": 2}, headers=admin)
    assert r.status_code == 200 and r.json()["below_minimum"] is True
    assert (
        await api.put("/api/v1/admin/pools/huge/us", json={"min_available": 1, "target_available": 2}, headers=admin)
    ).status_code == 422
    raised = (await api.post("/api/v1/admin/pools/check", headers=admin)).json()["raised"]
    assert sorted(raised) == ["build/eu", "build/us", "scale/us"]
    replenish = (await api.get("/api/v1/admin/pools/replenish", headers=admin)).json()["items"]
    assert {(i["tier"], i["region"], i["to_order"]) for i in replenish} == {
        ("build", "eu", 5),
        ("build", "us", 3),
        ("scale", "us", 2),
    }
    pools = (await api.get("/api/v1/admin/pools", headers=admin)).json()["items"]
    assert {(p["tier"], p["region"]) for p in pools} == {("build", "eu"), ("build", "us"), ("scale", "us")}


ROUTES = [
    ("GET", BASE, Scope.SERVERS_READ),
    ("POST", BASE, Scope.SERVERS_WRITE),
    ("GET", f"{BASE}/held", Scope.SERVERS_READ),
    ("POST", f"{BASE}/held/{uuid.uuid4()}/assign", Scope.SERVERS_WRITE),
    ("GET", f"{BASE}/costs", Scope.SERVERS_READ),
    ("GET", f"{BASE}/migrations", Scope.SERVERS_READ),
    ("POST", f"{BASE}/migrations/check", Scope.SERVERS_WRITE),
    ("GET", f"{BASE}/{uuid.uuid4()}", Scope.SERVERS_READ),
    ("POST", f"{BASE}/{uuid.uuid4()}/retire", Scope.SERVERS_WRITE),
    ("GET", f"{BASE}/{uuid.uuid4()}/provider-status", Scope.SERVERS_READ),
    ("POST", f"{BASE}/{uuid.uuid4()}/snapshots", Scope.SERVERS_WRITE),
    ("GET", "/api/v1/admin/pools", Scope.SERVERS_READ),
    ("GET", "/api/v1/admin/pools/replenish", Scope.SERVERS_READ),
    ("POST", "/api/v1/admin/pools/check", Scope.SERVERS_WRITE),
    ("PUT", "/api/v1/admin/pools/build/eu", Scope.SERVERS_WRITE),
]


async def test_every_route_wants_a_token_with_its_scope(api, sessions):
    spec = hub_app(servers_settings("postgresql://x/y"), routers=endpoints.routers).openapi()["paths"]
    assert sum(len(ops) for path, ops in spec.items() if path.startswith("/api/v1/admin/")) == len(ROUTES)
    readers = await token(sessions, Scope.SERVERS_READ)
    others = await token(sessions, Scope.ORDERS_READ, Scope.ORDERS_WRITE)
    for method, path, scope in ROUTES:
        r = await api.request(method, path)
        assert r.status_code == 401, (method, path)
        assert (await api.request(method, path, headers=others)).status_code == 403, (method, path)
        if scope is Scope.SERVERS_WRITE:
            assert (await api.request(method, path, headers=readers)).status_code == 403, (method, path)


async def test_provider_status_and_snapshots_of_a_netcup_server_go_to_the_scp_api(sessions, database_url):
    fake = FakeNetcup(task_polls=1)
    fake.add_server(4242, state="RUNNING")
    with LoopbackServer(fake.app) as srv:
        settings = servers_settings(
            database_url,
            netcup_api_url=srv.url + "/scp-core",
            netcup_token_url=srv.url + "/realms/scp/protocol/openid-connect/token",
            netcup_refresh_token="netcup-offline-refresh-token",
        )
        app = hub_app(settings, routers=endpoints.routers)
        admin = await token(sessions)
        [server] = await add_servers(sessions, 1)
        async with sessions() as s, s.begin():
            (await s.get(Server, server.id)).provider_ref = "4242"
        async with (
            LifespanManager(app) as m,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=m.app), base_url="http://hub") as api,
        ):
            st = (await api.get(f"{BASE}/{server.id}/provider-status", headers=admin)).json()
            assert (st["state"], st["provider_state"], st["ipv4"]) == ("running", "RUNNING", ["127.0.0.1"])
            r = await api.post(f"{BASE}/{server.id}/snapshots", json={"name": "pre-update"}, headers=admin)
            assert r.status_code == 201 and r.json()["name"] == "pre-update"
            assert "pre-update" in fake.snapshots[4242]
            fake.inject("GET", "/scp-core/api/v1/servers/4242", 404, times=1)
            r = await api.get(f"{BASE}/{server.id}/provider-status", headers=admin)
            assert r.status_code == 502 and r.json()["type"].endswith("/provider-error")


async def test_provider_calls_without_credentials_are_503(api, admin, sessions):
    [server] = await add_servers(sessions, 1)
    r = await api.get(f"{BASE}/{server.id}/provider-status", headers=admin)
    assert r.status_code == 503 and r.json()["type"].endswith("/provider-not-configured")


def test_the_full_hub_serves_the_servers_and_pools_routes():
    paths = create_app(servers_settings("postgresql://x/y")).openapi()["paths"]
    assert {"/api/v1/admin/servers", "/api/v1/admin/pools/replenish", "/api/v1/admin/servers/costs"} <= set(paths)
