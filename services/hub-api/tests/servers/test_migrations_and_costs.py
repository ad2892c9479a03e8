"""The monthly migration check (Hetzner tenants → AVAILABLE Netcup servers) and the cost view."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hub_testing.servers import add_servers, staged
from letsbe_contracts.events import ServerMigrationProposedV1
from letsbe_hub.servers.migrations import propose_migrations
from letsbe_hub.servers.models import InventoryStatus
from letsbe_platform.db import unit_of_work

NOV = datetime(2026, 11, 27, tzinfo=UTC)
DEC = datetime(2026, 12, 2, tzinfo=UTC)


async def _propose(sessions, now):
    async with unit_of_work(sessions) as s:
        return await propose_migrations(s, now)


async def test_hetzner_tenants_are_proposed_a_free_netcup_server_of_their_pool_once_a_month(sessions):
    tenants = [uuid.uuid4(), uuid.uuid4(), uuid.uuid4()]
    h1, h2 = await add_servers(sessions, 2, provider="hetzner", status=InventoryStatus.IN_USE, order_id=None)
    for days, server, tenant in ((40, h1, tenants[0]), (3, h2, tenants[1])):  # h1 is on Hetzner the longest
        async with unit_of_work(sessions) as s:
            row = await s.get(type(server), server.id)
            row.order_id = row.tenant_id = tenant
            row.reserved_at = NOV - timedelta(days=days)
    await add_servers(
        sessions,
        1,
        provider="hetzner",
        tier="scale",
        status=InventoryStatus.IN_USE,
        order_id=tenants[2],
        tenant_id=tenants[2],
    )  # no Netcup scale server is free
    [netcup] = await add_servers(sessions, 1, provider="netcup")
    await add_servers(sessions, 1, provider="netcup", region="us")  # wrong region

    first = await _propose(sessions, NOV)
    assert [(p.from_server_id, p.to_server_id, p.period) for p in first] == [(h1.id, netcup.id, "2026-11")]
    assert float(first[0].monthly_saving_eur) == round(15.59 - 14.5, 2)
    [(env, event)] = await staged(sessions, ServerMigrationProposedV1)
    assert (event.tenant_id, event.to_server_id, event.period) == (tenants[0], netcup.id, "2026-11")
    assert env.correlation_id == str(tenants[0])

    assert await _propose(sessions, NOV) == [], "one proposal per tenant (and per Netcup server) a month"
    assert len(await _propose(sessions, DEC)) == 1, "next month it is proposed again"
    assert len(await staged(sessions, ServerMigrationProposedV1)) == 2


async def test_the_cost_view_sums_the_seeds_price_tables(api, admin, sessions):
    await add_servers(sessions, 3, provider="netcup")  # idle pool servers still cost their contract
    await add_servers(sessions, 2, provider="netcup", status=InventoryStatus.IN_USE)
    await add_servers(sessions, 2, provider="hetzner", status=InventoryStatus.IN_USE)
    await add_servers(sessions, 1, provider="hetzner", tier="enterprise", region="us", status=InventoryStatus.RESERVED)
    await add_servers(sessions, 4, provider="netcup", status=InventoryStatus.RETIRED)

    view = (await api.get("/api/v1/admin/servers/costs", headers=admin)).json()

    lines = {(li["provider"], li["tier"], li["region"]): li for li in view["lines"]}
    assert lines[("netcup", "build", "eu")] == {
        "provider": "netcup",
        "tier": "build",
        "region": "eu",
        "servers": 5,
        "idle": 3,
        "unit_monthly_eur": 14.5,
        "monthly_eur": 72.5,
        "hourly_eur": None,
    }
    assert lines[("hetzner", "build", "eu")]["monthly_eur"] == 31.18
    assert lines[("hetzner", "build", "eu")]["hourly_eur"] == 0.0214
    assert lines[("hetzner", "enterprise", "us")]["monthly_eur"] == 58.15
    assert view["by_provider"] == {"netcup": 72.5, "hetzner": 89.33}
    assert view["total_monthly_eur"] == 161.83
    assert view["idle_monthly_eur"] == 43.5
    assert view["overflow_monthly_eur"] == 89.33
    assert view["overflow_premium_eur"] == round(2 * (15.59 - 14.5) + (58.15 - 48.0), 2)
