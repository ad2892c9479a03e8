"""What the customer API answers. Only what a customer may see of their orders and tenants: no operator notes,
no server addresses, no internal failure detail."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from letsbe_contracts.validation import RequestModel
from letsbe_hub.orders.schemas import Email


class SignInRequest(RequestModel):
    model_config = ConfigDict(extra="forbid")

    email: Email


class SignInAccepted(BaseModel):
    detail: str


class Me(BaseModel):
    email: str
    csrf_token: str  # send it back as X-CSRF-Token on every POST
    session_expires_at: datetime


class CustomerOrder(BaseModel):
    order_id: uuid.UUID
    domain: str
    tier: str
    region: str
    tools: list[str]
    status: str
    amount_cents: int
    currency: str
    created_at: datetime
    paid_at: datetime | None
    checkout_url: str | None  # while the order waits for payment
    tenant_id: uuid.UUID | None
    credentials_waiting: bool  # the tools' logins can be revealed (once)


class ToolLink(BaseModel):
    tool: str
    title: str
    url: str


class AgentHealth(BaseModel):
    agent: str
    version: str
    last_heartbeat_at: datetime | None
    healthy: bool


class LastBackup(BaseModel):
    report_date: date
    checked_at: datetime
    ok: bool
    problem: str | None


class CustomerTenant(BaseModel):
    tenant_id: uuid.UUID
    order_id: uuid.UUID
    domain: str
    tier: str
    region: str
    status: str
    health: str  # ok | degraded | down | pending
    tools: list[ToolLink]
    agents: list[AgentHealth]
    last_backup: LastBackup | None


class TokenUsage(BaseModel):
    tenant_id: uuid.UUID
    period_start: datetime  # the calendar month (UTC) the allowance counts
    tokens_in: int
    tokens_out: int
    tokens_used: int
    allowance: int
    percent_used: float
    requests: int


class InvoiceOut(BaseModel):
    invoice_id: str
    number: str | None
    status: str | None
    amount_due_cents: int
    amount_paid_cents: int
    currency: str
    created_at: datetime
    url: str | None
    pdf_url: str | None


PushPlatform = Literal["apns", "fcm", "webpush"]


class PushDeviceCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    platform: PushPlatform
    # What the push service addresses the device by (an APNs device token, an FCM registration token, a Web Push
    # subscription's endpoint): visible ASCII, no spaces.
    token: Annotated[str, Field(min_length=8, max_length=4096, pattern=r"^[\x21-\x7e]+$")]
    label: Annotated[str, Field(min_length=1, max_length=80)] | None = None


class PushDeviceOut(BaseModel):
    """A registered device as its customer sees it: the token only by its last characters."""

    model_config = ConfigDict(from_attributes=True)
    device_id: uuid.UUID = Field(validation_alias="id")
    platform: PushPlatform
    token_tail: str
    label: str | None
    created_at: datetime


class TenantPushDevice(BaseModel):
    """A device to push a tenant's alert to (the push gateway reads these: the token in full)."""

    model_config = ConfigDict(from_attributes=True)
    device_id: uuid.UUID = Field(validation_alias="id")
    platform: PushPlatform
    token: str
    created_at: datetime
