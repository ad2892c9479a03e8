import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from letsbe_contracts.enums import AutomationMode, FailureStage, OrderStatus, Region, Tier
from letsbe_contracts.events import DomainName
from letsbe_contracts.validation import RequestModel

Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class OrderCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    customer_name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    customer_email: Email
    domain: DomainName
    tier: Tier
    region: Region
    tools: list[Annotated[str, StringConstraints(min_length=1, max_length=60)]] = Field(
        min_length=1, max_length=100, description="Tool names from GET /api/v1/public/tools"
    )
    automation_mode: AutomationMode = AutomationMode.AUTO
    cloudflare_zone_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] | None = None


class OrderCancel(RequestModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = "cancelled by an operator"


class OrderRetry(RequestModel):
    model_config = ConfigDict(extra="forbid")

    force: bool = Field(default=False, description="Retry even though the failure was reported as not retryable")
    reason: Reason | None = None


class TransitionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    from_status: OrderStatus | None
    to_status: OrderStatus
    actor: str
    reason: str | None
    failed_stage: FailureStage | None
    at: datetime


class WelcomeEmailOut(BaseModel):
    state: str
    attempts: int
    sent_at: datetime | None
    last_error: str | None


class OrderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: OrderStatus
    customer_name: str
    customer_email: str
    domain: str
    tier: Tier
    region: Region
    tools: list[str]
    automation_mode: AutomationMode
    cloudflare_zone_id: str | None
    failed_stage: FailureStage | None
    failure_reason: str | None
    failure_retryable: bool | None
    retry_count: int
    amount_cents: int
    currency: str
    checkout_url: str | None
    checkout_session_id: str | None
    paid_at: datetime | None
    amount_refunded_cents: int
    payment_failures: int
    last_payment_error: str | None
    attention: str | None
    server_target: dict[str, Any] | None
    tenant_id: uuid.UUID | None
    created_by: str
    created_at: datetime
    updated_at: datetime


class OrderDetail(OrderOut):
    history: list[TransitionOut]
    welcome_email: WelcomeEmailOut | None = None


class CheckoutOut(BaseModel):
    order_id: uuid.UUID
    checkout_session_id: str
    checkout_url: str | None
