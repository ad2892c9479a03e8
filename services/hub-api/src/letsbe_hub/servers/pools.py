"""Pool policies per tier × region, the below-minimum check and the replenish list.

The check keeps one open alert per pool: it raises (alert-raised via the outbox) when a pool first drops below its
minimum, stays quiet while it stays there, and resolves (alert-resolved) once the pool is back at its minimum. Its
state lives on the pool row, which the check locks, so replicas running the check at once still raise once.
Netcup servers come on 12-month contracts, so "replenish" is a task for ops (the replenish list), not an API call.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts import AlertRaisedV1, AlertResolvedV1, AlertSeverity, Region, Tier, load_catalog
from letsbe_hub.db import outbox
from letsbe_hub.servers import repository as repo
from letsbe_hub.servers.models import InventoryStatus, PoolPolicy
from letsbe_hub.servers.schemas import PoolCheckResult, PoolOut, ReplenishItem
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import add_event

log = get_logger(__name__)

RULE = "pool.below_minimum"


def _key(tier: str, region: str) -> str:
    return f"{tier}/{region}"


async def pool_views(session: AsyncSession) -> list[PoolOut]:
    """Every pool with a policy, plus any pool that has servers but no policy yet (min 0)."""
    policies = {(p.tier, p.region): p for p in await repo.list_pools(session)}
    counts = await repo.counts_by_pool(session)
    out = []
    for tier, region in sorted(set(policies) | set(counts), key=lambda k: (k[1], list(Tier).index(Tier(k[0])))):
        policy = policies.get((tier, region))
        c = counts.get((tier, region), {})
        available = c.get(InventoryStatus.AVAILABLE, 0)
        minimum = policy.min_available if policy else 0
        out.append(
            PoolOut(
                tier=tier,
                region=region,
                min_available=minimum,
                target_available=policy.target_available if policy else 0,
                available=available,
                reserved=c.get(InventoryStatus.RESERVED, 0),
                in_use=c.get(InventoryStatus.IN_USE, 0),
                draining=c.get(InventoryStatus.DRAINING, 0),
                below_minimum=available < minimum,
                alert_open=bool(policy and policy.alert_id),
                below_minimum_since=policy.below_minimum_since if policy else None,
                updated_by=policy.updated_by if policy else None,
            )
        )
    return out


async def set_pool(
    session: AsyncSession,
    tier: Tier,
    region: Region,
    min_available: int,
    target_available: int,
    *,
    by: str | None = None,
) -> PoolOut:
    await repo.upsert_pool(session, tier.value, region.value, min_available, target_available, by)
    log.info(
        "pool policy set", tier=tier.value, region=region.value, minimum=min_available, target=target_available, by=by
    )
    return next(p for p in await pool_views(session) if (p.tier, p.region) == (tier, region))


async def check_pools(session: AsyncSession, now: datetime | None = None) -> PoolCheckResult:
    now = now or datetime.now(UTC)
    pools = await repo.list_pools(session, lock=True)  # serialises concurrent checks (other replicas)
    counts = await repo.counts_by_pool(session)
    raised: list[str] = []
    resolved: list[str] = []
    for pool in pools:
        available = counts.get((pool.tier, pool.region), {}).get(InventoryStatus.AVAILABLE, 0)
        if available < pool.min_available:
            if pool.alert_id is None:
                await _raise(session, pool, available, now)
                raised.append(_key(pool.tier, pool.region))
        elif pool.alert_id is not None:
            await _resolve(session, pool, available, now)
            resolved.append(_key(pool.tier, pool.region))
    return PoolCheckResult(raised=raised, resolved=resolved)


async def _raise(session: AsyncSession, pool: PoolPolicy, available: int, now: datetime) -> None:
    alert_id = uuid.uuid4()
    pool.alert_id, pool.below_minimum_since = alert_id, now
    plan = load_catalog().tier(pool.tier).netcup_plan
    to_order = pool.target_available - available
    summary = (
        f"The {pool.tier} pool in {pool.region.upper()} is below its minimum: {available} AVAILABLE, minimum "
        f"{pool.min_available}. Order {to_order} × Netcup {plan} to reach the target of {pool.target_available}."
    )
    await add_event(
        session,
        outbox,
        AlertRaisedV1(
            alert_id=alert_id,
            tenant_id=None,
            rule=RULE,
            severity=AlertSeverity.HARD if available == 0 else AlertSeverity.MEDIUM,
            summary=summary,
            value=available,
            threshold=pool.min_available,
            first_seen=now,
            last_seen=now,
        ),
        correlation_id=f"pool:{pool.tier}:{pool.region}",
        event_id=uuid.uuid5(alert_id, "raised"),
    )
    log.warning(
        "pool below minimum", tier=pool.tier, region=pool.region, available=available, minimum=pool.min_available
    )


async def _resolve(session: AsyncSession, pool: PoolPolicy, available: int, now: datetime) -> None:
    alert_id = pool.alert_id
    assert alert_id is not None
    pool.alert_id, pool.below_minimum_since = None, None
    await add_event(
        session,
        outbox,
        AlertResolvedV1(
            alert_id=alert_id,
            tenant_id=None,
            rule=RULE,
            resolved_at=now,
            summary=f"The {pool.tier} pool in {pool.region.upper()} is back at {available} AVAILABLE "
            f"(minimum {pool.min_available}).",
        ),
        correlation_id=f"pool:{pool.tier}:{pool.region}",
        event_id=uuid.uuid5(alert_id, "resolved"),
    )
    log.info("pool back at minimum", tier=pool.tier, region=pool.region, available=available)


async def replenish_list(session: AsyncSession) -> list[ReplenishItem]:
    """The pools with an open below-minimum alert, with what to order now (live counts)."""
    policies: Sequence[PoolPolicy] = [p for p in await repo.list_pools(session) if p.alert_id is not None]
    counts = await repo.counts_by_pool(session)
    catalog = load_catalog()
    items = []
    for p in policies:
        available = counts.get((p.tier, p.region), {}).get(InventoryStatus.AVAILABLE, 0)
        spec = catalog.tier(p.tier)
        to_order = max(0, p.target_available - available)
        assert p.alert_id is not None
        items.append(
            ReplenishItem(
                tier=p.tier,
                region=p.region,
                netcup_plan=spec.netcup_plan,
                available=available,
                min_available=p.min_available,
                target_available=p.target_available,
                to_order=to_order,
                monthly_cost_eur=round(to_order * spec.netcup_monthly_eur, 2),
                alert_id=p.alert_id,
                below_minimum_since=p.below_minimum_since,
            )
        )
    return items
