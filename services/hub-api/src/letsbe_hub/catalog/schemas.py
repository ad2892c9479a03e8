from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from letsbe_contracts.enums import Tier
from letsbe_contracts.validation import RequestModel

ToolNameIn = Annotated[str, StringConstraints(min_length=1, max_length=60)]


class ToolOut(BaseModel):
    name: str
    title: str
    ram_mb: int = Field(description="The application itself")
    stack_ram_mb: int = Field(description="Application plus its database/redis: what the calculator counts")
    disk_gb: int
    requires_db: str | None
    requires_redis: bool
    subdomain: str | None
    admin_only: bool


class TierOut(BaseModel):
    tier: Tier
    ram_mb: int
    cpu: int
    disk_gb: int
    recommended_tools: str


class CatalogOut(BaseModel):
    overhead_ram_mb: int
    tiers: list[TierOut]
    tools: list[ToolOut]


class CalculateRequest(RequestModel):
    tools: list[ToolNameIn] = Field(max_length=100, description="Tool names from GET /api/v1/public/tools")


class TierFitOut(BaseModel):
    tier: Tier
    ram_mb: int
    disk_gb: int
    fits: bool
    ram_headroom_mb: int
    disk_headroom_gb: int


class CalculateResponse(BaseModel):
    tools: list[str]
    tools_ram_mb: int
    overhead_ram_mb: int
    total_ram_mb: int
    disk_gb: int
    recommended_tier: Tier | None = Field(description="The smallest tier that fits; null if none does")
    ram_headroom_mb: int | None = Field(description="RAM left on the recommended tier")
    tiers: list[TierFitOut]
