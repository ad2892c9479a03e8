"""Request and response bodies of the servers and pools admin API."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from letsbe_contracts import Provider, Region, Tier
from letsbe_contracts.events import HostKeyFingerprint
from letsbe_contracts.validation import RequestModel
from letsbe_hub.servers.models import HoldStatus, InventoryStatus


class _In(RequestModel):
    model_config = ConfigDict(extra="forbid")


class ServerCreate(_In):
    """A pool server an operator bought (Netcup, 12-month contract) and installed (Debian 12 + Docker)."""

    provider: Provider = Provider.NETCUP
    provider_ref: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,200}$")] = Field(
        description="The provider's id of the server (Netcup SCP server id, Hetzner server id)"
    )
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    tier: Tier
    region: Region
    ipv4: IPv4Address
    ipv6: IPv6Address | None = None
    ssh_port: Annotated[int, Field(ge=1, le=65535)] = 22
    ssh_user: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "letsbe"
    host_key_fingerprint: HostKeyFingerprint | None = Field(
        default=None, description="SHA256:… of the SSH host key; read from the server when omitted"
    )
    contract_end: date | None = Field(default=None, description="End of the Netcup contract term")


class ServerOut(BaseModel):
    id: uuid.UUID
    provider: Provider
    provider_ref: str
    name: str
    tier: Tier
    region: Region
    ipv4: str
    ipv6: str | None
    ssh_port: int
    ssh_user: str
    host_key_fingerprint: str
    status: InventoryStatus
    order_id: uuid.UUID | None
    tenant_id: uuid.UUID | None
    contract_end: date | None
    billing: str = Field(description="'12-month contract' (Netcup) or 'hourly' (Hetzner)")
    created_at: datetime
    reserved_at: datetime | None
    retired_at: datetime | None
    registered_by: str | None = None
    retired_by: str | None = None


class HeldOrderOut(BaseModel):
    order_id: uuid.UUID
    tier: Tier
    region: Region
    domain: str
    status: HoldStatus
    reason: str
    held_at: datetime
    server_id: uuid.UUID | None
    assigned_at: datetime | None
    assigned_by: str | None


class AssignServer(_In):
    server_id: uuid.UUID | None = Field(
        default=None, description="A specific AVAILABLE server; omitted: any AVAILABLE server of the order's pool"
    )


class Assigned(BaseModel):
    order_id: uuid.UUID
    server: ServerOut


class PoolOut(BaseModel):
    tier: Tier
    region: Region
    min_available: int
    target_available: int
    available: int
    reserved: int
    in_use: int
    draining: int
    below_minimum: bool
    alert_open: bool
    below_minimum_since: datetime | None
    updated_by: str | None = Field(default=None, description="Who set the sizes last (None: the defaults)")


class PoolUpdate(_In):
    min_available: Annotated[int, Field(ge=0, le=1000)]
    target_available: Annotated[int, Field(ge=0, le=1000)]

    @model_validator(mode="after")
    def _target_not_below_min(self) -> PoolUpdate:
        if self.target_available < self.min_available:
            raise ValueError("target_available must be at least min_available")
        return self


class ReplenishItem(BaseModel):
    """A pool below its minimum: what ops should order from Netcup (contracts are bought by hand)."""

    tier: Tier
    region: Region
    netcup_plan: str
    available: int
    min_available: int
    target_available: int
    to_order: int
    monthly_cost_eur: float
    alert_id: uuid.UUID
    below_minimum_since: datetime | None


class PoolCheckResult(BaseModel):
    raised: list[str]
    resolved: list[str]


class CostLine(BaseModel):
    provider: Provider
    tier: Tier
    region: Region
    servers: int
    idle: int = Field(description="AVAILABLE servers: paid for, nobody on them")
    unit_monthly_eur: float
    monthly_eur: float
    hourly_eur: float | None = Field(description="Hetzner's hourly price; None for Netcup contracts")


class CostView(BaseModel):
    currency: str = "EUR"
    lines: list[CostLine]
    by_provider: dict[str, float]
    total_monthly_eur: float
    idle_monthly_eur: float
    overflow_monthly_eur: float = Field(description="What Hetzner overflow costs per month")
    overflow_premium_eur: float = Field(description="Overflow cost minus the same servers on Netcup")


class MigrationProposalOut(BaseModel):
    id: uuid.UUID
    period: str
    tenant_id: uuid.UUID
    from_server_id: uuid.UUID
    to_server_id: uuid.UUID
    tier: Tier
    region: Region
    monthly_saving_eur: float
    created_at: datetime


class MigrationCheckResult(BaseModel):
    period: str
    proposed: list[MigrationProposalOut]


class ProviderStatusOut(BaseModel):
    server_id: uuid.UUID
    provider: Provider
    provider_ref: str
    state: str
    provider_state: str
    ipv4: list[str]


class SnapshotCreate(_In):
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]


class SnapshotOut(BaseModel):
    server_id: uuid.UUID
    provider: Provider
    snapshot_ref: str
    name: str
    created_at: datetime | None
