"""What the inventory costs per month, from the seed's price tables (§6.1 Netcup, §6.2 Hetzner) in the catalog.

Netcup servers cost their contract price whatever they do; Hetzner servers are billed hourly up to a monthly cap,
counted here at the cap (they run all month). Retired servers cost nothing.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts import Provider, load_catalog
from letsbe_hub.servers import repository as repo
from letsbe_hub.servers.models import InventoryStatus
from letsbe_hub.servers.schemas import CostLine, CostView


async def cost_view(session: AsyncSession) -> CostView:
    catalog = load_catalog()
    grouped: dict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: {"servers": 0, "idle": 0})
    for provider, tier, region, status, n in await repo.cost_rows(session):
        g = grouped[(provider, tier, region)]
        g["servers"] += n
        if status == InventoryStatus.AVAILABLE:
            g["idle"] += n
    lines: list[CostLine] = []
    by_provider: dict[str, float] = {p.value: 0.0 for p in Provider}
    idle = overflow = premium = 0.0
    for (provider, tier, region), g in sorted(grouped.items()):
        spec = catalog.tier(tier)
        hetzner = provider == Provider.HETZNER
        unit = spec.hetzner_monthly_cap_eur if hetzner else spec.netcup_monthly_eur
        monthly = round(unit * g["servers"], 2)
        lines.append(
            CostLine(
                provider=provider,
                tier=tier,
                region=region,
                servers=g["servers"],
                idle=g["idle"],
                unit_monthly_eur=unit,
                monthly_eur=monthly,
                hourly_eur=spec.hetzner_hourly_eur if hetzner else None,
            )
        )
        by_provider[provider] = round(by_provider[provider] + monthly, 2)
        idle += unit * g["idle"]
        if hetzner:
            overflow += monthly
            premium += (spec.hetzner_monthly_cap_eur - spec.netcup_monthly_eur) * g["servers"]
    return CostView(
        lines=lines,
        by_provider=by_provider,
        total_monthly_eur=round(sum(by_provider.values()), 2),
        idle_monthly_eur=round(idle, 2),
        overflow_monthly_eur=round(overflow, 2),
        overflow_premium_eur=round(premium, 2),
    )
