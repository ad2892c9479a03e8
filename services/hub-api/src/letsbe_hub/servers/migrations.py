"""The monthly migration check (seed §6.2): tenants on Hetzner overflow → an AVAILABLE Netcup server, proposed.

One proposal per tenant per month (unique on server + period), each Netcup server proposed at most once per month,
and a server-migration-proposed event per new proposal. Executing a migration is an operator's job.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts import Provider, Region, Tier, load_catalog
from letsbe_contracts.events import ServerMigrationProposedV1
from letsbe_hub.db import outbox
from letsbe_hub.servers import repository as repo
from letsbe_hub.servers.models import InventoryStatus, MigrationProposal, Server
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import add_event

log = get_logger(__name__)


def period_of(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m")


def period_of_now() -> str:
    return period_of(datetime.now(UTC))


async def propose_migrations(session: AsyncSession, now: datetime | None = None) -> list[MigrationProposal]:
    period = period_of(now or datetime.now(UTC))
    # One check at a time across replicas: the choice of targets depends on what earlier proposals took.
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('hub.servers.migration_check'))"))
    catalog = load_catalog()
    existing = await repo.proposals_for(session, period)
    proposed_from = {p.from_server_id for p in existing}
    taken = {p.to_server_id for p in existing}
    spare: dict[tuple[str, str], list[Server]] = defaultdict(list)
    for s in await repo.servers_by(session, Provider.NETCUP.value, [InventoryStatus.AVAILABLE]):
        if s.id not in taken:
            spare[(s.tier, s.region)].append(s)
    new: list[uuid.UUID] = []
    overflow = await repo.servers_by(
        session, Provider.HETZNER.value, [InventoryStatus.IN_USE, InventoryStatus.RESERVED]
    )
    for h in overflow:
        if h.id in proposed_from or not spare[(h.tier, h.region)] or (h.tenant_id or h.order_id) is None:
            continue
        to = spare[(h.tier, h.region)].pop(0)
        spec = catalog.tier(h.tier)
        saving = max(Decimal("0"), Decimal(str(spec.hetzner_monthly_cap_eur)) - Decimal(str(spec.netcup_monthly_eur)))
        proposal = MigrationProposal(
            id=uuid.uuid5(h.id, period),
            period=period,
            tenant_id=h.tenant_id or h.order_id,
            from_server_id=h.id,
            to_server_id=to.id,
            tier=h.tier,
            region=h.region,
            monthly_saving_eur=saving,
        )
        if not await repo.add_proposal(
            session,
            id=proposal.id,
            period=period,
            tenant_id=proposal.tenant_id,
            from_server_id=h.id,
            to_server_id=to.id,
            tier=h.tier,
            region=h.region,
            monthly_saving_eur=saving,
        ):
            continue
        await add_event(
            session,
            outbox,
            ServerMigrationProposedV1(
                proposal_id=proposal.id,
                period=period,
                tenant_id=proposal.tenant_id,
                tier=Tier(h.tier),
                region=Region(h.region),
                from_server_id=h.id,
                to_server_id=to.id,
                monthly_saving_eur=float(saving),
            ),
            correlation_id=str(proposal.tenant_id),
            event_id=proposal.id,
        )
        log.info("migration proposed", tenant_id=str(proposal.tenant_id), from_server=str(h.id), to_server=str(to.id))
        new.append(proposal.id)
    return [p for p in await repo.proposals_for(session, period) if p.id in new]
