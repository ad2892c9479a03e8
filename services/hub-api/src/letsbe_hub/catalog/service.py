"""Sizing: which tier a set of tools needs (seed §5.1–5.3). Used by the public calculator and order creation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from letsbe_contracts import LETSBE_OVERHEAD_MB, Catalog, load_catalog
from letsbe_contracts.enums import Tier
from letsbe_platform.errors import Unprocessable


@dataclass(frozen=True)
class TierFit:
    tier: Tier
    ram_mb: int
    disk_gb: int
    fits: bool
    ram_headroom_mb: int  # what is left after the tools and the LetsBe overhead (negative: does not fit)
    disk_headroom_gb: int


@dataclass(frozen=True)
class Sizing:
    tools: tuple[str, ...]
    tools_ram_mb: int
    overhead_ram_mb: int
    total_ram_mb: int
    disk_gb: int
    recommended_tier: Tier | None  # the smallest tier that fits; None if even the largest does not
    tiers: tuple[TierFit, ...]

    def fit(self, tier: Tier) -> TierFit:
        return next(t for t in self.tiers if t.tier == tier)


def validate_tools(names: Iterable[str], catalog: Catalog | None = None) -> tuple[str, ...]:
    """The selected tools, de-duplicated in order; unknown names are a 422 that lists them."""
    catalog = catalog or load_catalog()
    wanted = tuple(dict.fromkeys(names))
    unknown = catalog.unknown(wanted)
    if unknown:
        raise Unprocessable(
            f"Unknown tool(s): {', '.join(unknown)}.",
            unknown_tools=unknown,
            known_tools=[t.name for t in catalog.selectable],
        )
    return wanted


def size(names: Iterable[str], catalog: Catalog | None = None) -> Sizing:
    """RAM is each tool's stack budget (app + its database/redis) plus the LetsBe overhead (LETSBE_OVERHEAD_MB)."""
    catalog = catalog or load_catalog()
    tools = validate_tools(names, catalog)
    tools_ram = sum(catalog.tool(n).stack_ram_mb for n in tools)
    disk = sum(catalog.tool(n).disk_gb for n in tools)
    total = tools_ram + LETSBE_OVERHEAD_MB
    fits = tuple(
        TierFit(
            tier=spec.tier,
            ram_mb=spec.ram_mb,
            disk_gb=spec.disk_gb,
            fits=total <= spec.ram_mb and disk <= spec.disk_gb,
            ram_headroom_mb=spec.ram_mb - total,
            disk_headroom_gb=spec.disk_gb - disk,
        )
        for spec in sorted(catalog.tiers, key=lambda s: s.ram_mb)
    )
    recommended = next((f.tier for f in fits if f.fits), None)
    return Sizing(tools, tools_ram, LETSBE_OVERHEAD_MB, total, disk, recommended, fits)
