"""The public order route's payload and answer, and the parts of Stripe's billing objects the hub relies on."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from letsbe_contracts.enums import OrderStatus, Region, Tier
from letsbe_contracts.events import DomainName
from letsbe_contracts.validation import RequestModel
from letsbe_hub.orders.schemas import Email, OrderCreate


class PublicOrderCreate(RequestModel):
    """What the website sends: the calculator's choice, the domain, and who pays."""

    model_config = ConfigDict(extra="forbid")

    tier: Tier
    region: Region
    tools: list[Annotated[str, StringConstraints(min_length=1, max_length=60)]] = Field(
        min_length=1, max_length=100, description="Tool names from GET /api/v1/public/tools"
    )
    domain: DomainName
    email: Email
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = Field(
        default=None, description="The customer's or company's name (default: the email address)"
    )

    def as_order(self) -> OrderCreate:
        return OrderCreate(
            customer_name=self.name or self.email,
            customer_email=self.email,
            domain=self.domain,
            tier=self.tier,
            region=self.region,
            tools=self.tools,
        )


class PublicOrderOut(BaseModel):
    order_id: uuid.UUID
    status: OrderStatus
    checkout_session_id: str
    checkout_url: str | None


class SubscriptionOut(BaseModel):
    """What an operator sees of an order's subscription (the customer is the email plus the Stripe customer)."""

    model_config = ConfigDict(from_attributes=True)

    order_id: uuid.UUID
    state: str
    tier: Tier
    region: Region
    customer_email: str
    stripe_customer_id: str | None
    stripe_subscription_id: str
    price_id: str | None
    paid_through: datetime | None
    past_due_since: datetime | None
    grace_until: datetime | None
    suspensions: int
    suspended_at: datetime | None
    cancelled_at: datetime | None
    decommission_at: datetime | None
    decommissioned_at: datetime | None


class PortalOut(BaseModel):
    url: str


# --- Stripe objects (validated where used; everything else ignored) ----------------------------------------------


class _Stripe(RequestModel):
    model_config = ConfigDict(extra="ignore")


StripeRef = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_]+$")]
Stamp = Annotated[int, Field(ge=0, le=253_402_300_799)]


class SubscriptionDetails(_Stripe):
    subscription: StripeRef
    metadata: dict[str, str] | None = None


class InvoiceParent(_Stripe):
    subscription_details: SubscriptionDetails | None = None


class Period(_Stripe):
    start: Stamp
    end: Stamp


class InvoiceLine(_Stripe):
    period: Period | None = None


class InvoiceLines(_Stripe):
    data: list[InvoiceLine] = []


class InvoiceObj(_Stripe):
    id: StripeRef
    customer: StripeRef | None = None
    parent: InvoiceParent | None = None
    lines: InvoiceLines | None = None
    period_end: Stamp | None = None
    attempt_count: Annotated[int, Field(ge=0, le=1000)] = 0
    hosted_invoice_url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    amount_due: Annotated[int, Field(ge=0)] = 0
    currency: Annotated[str, StringConstraints(max_length=3)] = ""

    @property
    def subscription(self) -> SubscriptionDetails | None:
        return self.parent.subscription_details if self.parent else None

    def service_end(self) -> int | None:
        """The end of the period this invoice pays for (its lines' periods; the invoice's own as a fallback)."""
        ends = [line.period.end for line in (self.lines.data if self.lines else []) if line.period]
        return max(ends) if ends else self.period_end


class PriceObj(_Stripe):
    id: StripeRef
    lookup_key: Annotated[str, StringConstraints(max_length=200)] | None = None


class SubscriptionItem(_Stripe):
    price: PriceObj
    current_period_end: Stamp | None = None


class SubscriptionItems(_Stripe):
    data: list[SubscriptionItem] = []


class SubscriptionObj(_Stripe):
    id: StripeRef
    customer: StripeRef | None = None
    status: Annotated[str, StringConstraints(max_length=40)]
    metadata: dict[str, str] | None = None
    items: SubscriptionItems = SubscriptionItems()
