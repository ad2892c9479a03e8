"""Public (no auth) catalog and resource calculator, for the website's plan picker."""

from dataclasses import asdict

from fastapi import APIRouter

from letsbe_contracts import LETSBE_OVERHEAD_MB, load_catalog
from letsbe_hub.catalog.schemas import CalculateRequest, CalculateResponse, CatalogOut, TierFitOut, TierOut, ToolOut
from letsbe_hub.catalog.service import size

router = APIRouter(prefix="/api/v1/public", tags=["public"])


@router.get("/tools", name="tools", summary="The tool catalog, tiers and the LetsBe overhead")
async def tools() -> CatalogOut:
    catalog = load_catalog()
    return CatalogOut(
        overhead_ram_mb=LETSBE_OVERHEAD_MB,
        tiers=[TierOut.model_validate(t, from_attributes=True) for t in catalog.tiers],
        tools=[ToolOut.model_validate(t, from_attributes=True) for t in catalog.selectable],
    )


@router.post("/calculate", name="calculate", summary="RAM/disk for a set of tools and the smallest tier that fits")
async def calculate(body: CalculateRequest) -> CalculateResponse:
    s = size(body.tools)
    return CalculateResponse(
        tools=list(s.tools),
        tools_ram_mb=s.tools_ram_mb,
        overhead_ram_mb=s.overhead_ram_mb,
        total_ram_mb=s.total_ram_mb,
        disk_gb=s.disk_gb,
        recommended_tier=s.recommended_tier,
        ram_headroom_mb=s.fit(s.recommended_tier).ram_headroom_mb if s.recommended_tier else None,
        tiers=[TierFitOut(**asdict(f)) for f in s.tiers],
    )
