"""Admin-side bodies of the tenants context (the agent-side ones are in letsbe_contracts.agent)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from letsbe_contracts.enums import Region, Tier
from letsbe_contracts.events import DomainName
from letsbe_contracts.validation import RequestModel


class RegistrationTokenCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    domain: DomainName
    order_id: uuid.UUID
    tier: Tier
    region: Region
    server_id: uuid.UUID | None = None


class RegistrationTokenCreated(BaseModel):
    token: str
    expires_at: datetime


class AgentView(BaseModel):
    agent_id: uuid.UUID
    agent: str
    version: str
    hostname: str
    registered_at: datetime
    last_heartbeat_at: datetime | None
    revoked_at: datetime | None = None


class ComponentView(BaseModel):
    component: str
    version: str | None
    digest: str | None
    updated_at: datetime


class BackupView(BaseModel):
    report_date: date
    checked_at: datetime
    status: dict[str, Any] | None
    problem: str | None


# PENDING until its Safety Wrapper registers, then ACTIVE; DECOMMISSIONED at the end.
TenantStatus = Literal["PENDING", "ACTIVE", "DECOMMISSIONED"]


class TenantView(BaseModel):
    tenant_id: uuid.UUID
    order_id: uuid.UUID
    domain: str
    tier: str
    region: str
    server_id: uuid.UUID | None
    status: str
    staging: bool
    created_at: datetime
    agents: list[AgentView]
    components: list[ComponentView] = []
    last_backup: BackupView | None = None
    # The tenant's decommission job (GET /api/v1/admin/lifecycle/jobs/{id}): export window, server deletion.
    decommission_job_id: uuid.UUID | None = None


class TenantUpdate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    staging: bool


class TenantDecommission(RequestModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="decommissioned by an operator", min_length=1, max_length=2000)


class AgentDetailsView(BaseModel):
    agent_id: uuid.UUID
    details: dict[str, Any] | None
    updated_at: datetime | None
