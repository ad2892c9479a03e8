"""Pool policies, the below-minimum check (one alert per pool, not per check) and the replenish list."""

from __future__ import annotations

import asyncio

from sqlalchemy import update

from hub_testing.servers import add_servers, staged
from letsbe_contracts import AlertRaisedV1, AlertResolvedV1, AlertSeverity
from letsbe_hub.servers.models import InventoryStatus, Server
from letsbe_hub.servers.pools import RULE, check_pools, pool_views, replenish_list
from letsbe_platform.db import unit_of_work


async def _check(sessions):
    async with unit_of_work(sessions) as s:
        return await check_pools(s)


async def test_seeded_policies_follow_the_seed(sessions):
    async with sessions() as s:
        views = {(p.tier, p.region): p for p in await pool_views(s)}
    assert (views[("build", "eu")].min_available, views[("build", "eu")].target_available) == (3, 5)
    assert (views[("build", "us")].min_available, views[("build", "us")].target_available) == (2, 3)


async def test_a_pool_below_minimum_raises_one_alert_however_often_the_check_runs(sessions):
    await add_servers(sessions, 1, region="eu")
    first = await _check(sessions)
    assert sorted(first.raised) == ["build/eu", "build/us"]
    for _ in range(3):
        again = await _check(sessions)
        assert again.raised == [] and again.resolved == []

    raised = [e for _, e in await staged(sessions, AlertRaisedV1)]
    assert len(raised) == 2
    eu = next(e for e in raised if e.value == 1)
    assert eu.rule == RULE and eu.tenant_id is None and eu.threshold == 3
    assert eu.severity is AlertSeverity.MEDIUM and "Order 4 × Netcup RS 2000 G12" in eu.summary
    us = next(e for e in raised if e.value == 0)
    assert us.severity is AlertSeverity.HARD

    async with sessions() as s:
        items = {(i.tier, i.region): i for i in await replenish_list(s)}
    assert items[("build", "eu")].to_order == 4 and items[("build", "eu")].alert_id == eu.alert_id
    assert items[("build", "us")].to_order == 3 and items[("build", "us")].monthly_cost_eur == 43.5


async def test_back_at_minimum_resolves_and_a_new_drop_raises_a_new_alert(sessions):
    servers = await add_servers(sessions, 2, region="us")
    await add_servers(sessions, 3, region="eu")
    await add_servers(sessions, 1, region="us", status=InventoryStatus.RESERVED)
    assert (await _check(sessions)).raised == []

    async with unit_of_work(sessions) as s:
        await s.execute(update(Server).where(Server.id == servers[0].id).values(status="RESERVED"))
    assert (await _check(sessions)).raised == ["build/us"]
    await add_servers(sessions, 1, region="us")
    assert (await _check(sessions)).resolved == ["build/us"]
    async with unit_of_work(sessions) as s:
        await s.execute(update(Server).where(Server.id == servers[1].id).values(status="RETIRED"))
    assert (await _check(sessions)).raised == ["build/us"]

    first, second = [e for _, e in await staged(sessions, AlertRaisedV1)]
    [(_, resolved)] = await staged(sessions, AlertResolvedV1)
    assert resolved.alert_id == first.alert_id != second.alert_id
    async with sessions() as s:
        assert [(i.tier, i.region) for i in await replenish_list(s)] == [("build", "us")]


async def test_checks_running_at_once_in_several_replicas_still_raise_once(sessions):
    results = await asyncio.gather(*(_check(sessions) for _ in range(6)))
    assert sorted(r for res in results for r in res.raised) == ["build/eu", "build/us"]
    assert len(await staged(sessions, AlertRaisedV1)) == 2


async def test_pool_views_count_every_status_and_show_pools_without_a_policy(sessions):
    await add_servers(sessions, 2, tier="scale", region="eu")
    await add_servers(sessions, 1, tier="scale", region="eu", status=InventoryStatus.IN_USE)
    async with sessions() as s:
        views = {(p.tier, p.region): p for p in await pool_views(s)}
    scale = views[("scale", "eu")]
    assert (scale.available, scale.in_use, scale.min_available, scale.below_minimum) == (2, 1, 0, False)
    assert views[("build", "eu")].below_minimum
