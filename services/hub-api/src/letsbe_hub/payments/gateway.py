"""Stripe Checkout through the official SDK's async client (httpx underneath), behind a small protocol.

Tests and the sandbox point ``api_base`` at ``letsbe_fakes.stripe``, which speaks Stripe's REST wire format.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import stripe
from prometheus_client import Histogram

from letsbe_hub.payments.errors import PaymentProviderError
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

STRIPE_CALL_SECONDS = Histogram(
    "hub_stripe_call_duration_seconds", "Stripe API calls by operation and outcome", ["operation", "outcome"]
)


@dataclass(frozen=True)
class CheckoutRequest:
    order_id: uuid.UUID
    customer_email: str
    description: str
    amount_cents: int
    currency: str
    success_url: str
    cancel_url: str
    domain: str


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str | None
    status: str | None


@dataclass(frozen=True)
class Invoice:
    id: str
    number: str | None
    status: str | None
    amount_due: int
    amount_paid: int
    currency: str
    created: int  # unix seconds
    hosted_invoice_url: str | None
    invoice_pdf: str | None


class PaymentGateway(Protocol):
    async def create_checkout(self, request: CheckoutRequest, *, idempotency_key: str) -> CheckoutSession: ...

    async def list_invoices(self, email: str, *, limit: int = 24) -> list[Invoice]: ...

    async def aclose(self) -> None: ...


def _invoice(i: dict[str, Any]) -> Invoice:
    return Invoice(
        id=i["id"],
        number=i.get("number"),
        status=i.get("status"),
        amount_due=i.get("amount_due") or 0,
        amount_paid=i.get("amount_paid") or 0,
        currency=i.get("currency") or "",
        created=i.get("created") or 0,
        hosted_invoice_url=i.get("hosted_invoice_url"),
        invoice_pdf=i.get("invoice_pdf"),
    )


class StripeGateway:
    def __init__(self, secret_key: str, *, api_base: str, timeout: float = 10.0, max_retries: int = 2):
        self._http = stripe.HTTPXClient(timeout=timeout)
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base.rstrip("/")},
            http_client=self._http,
            # The SDK retries 409/429/5xx and timeouts with backoff, under the same idempotency key.
            max_network_retries=max_retries,
        )

    async def create_checkout(self, request: CheckoutRequest, *, idempotency_key: str) -> CheckoutSession:
        order_ref = str(request.order_id)
        params: dict[str, Any] = {
            "mode": "payment",
            "client_reference_id": order_ref,
            "customer_email": request.customer_email,
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": request.currency,
                        "unit_amount": request.amount_cents,
                        "product_data": {"name": request.description},
                    },
                }
            ],
            "metadata": {"order_id": order_ref, "domain": request.domain},
            # Copied onto the PaymentIntent and its charges, so payment_failed and refunds find the order too.
            "payment_intent_data": {"metadata": {"order_id": order_ref}},
        }
        started = time.perf_counter()
        try:
            session = await self._client.v1.checkout.sessions.create_async(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            STRIPE_CALL_SECONDS.labels("checkout.create", "error").observe(time.perf_counter() - started)
            log.warning(
                "stripe refused the checkout session",
                order_id=order_ref,
                http_status=exc.http_status,
                stripe_code=exc.code,
                error_type=type(exc).__name__,
            )
            raise PaymentProviderError(
                "Stripe did not create a checkout session; nothing was saved, try again.",
                provider_status=exc.http_status,
                provider_code=exc.code,
            ) from None
        STRIPE_CALL_SECONDS.labels("checkout.create", "ok").observe(time.perf_counter() - started)
        return CheckoutSession(id=session.id, url=session.url, status=session.status)

    async def list_invoices(self, email: str, *, limit: int = 24) -> list[Invoice]:
        """The invoices of every Stripe customer with this email, newest first (empty if Stripe knows none)."""
        started = time.perf_counter()
        try:
            customers = await self._client.v1.customers.list_async(params={"email": email, "limit": 10})
            found: list[Invoice] = []
            for customer in customers.data:
                page = await self._client.v1.invoices.list_async(params={"customer": customer.id, "limit": limit})
                found += [_invoice(i.to_dict()) for i in page.data]
        except stripe.StripeError as exc:
            STRIPE_CALL_SECONDS.labels("invoices.list", "error").observe(time.perf_counter() - started)
            log.warning("stripe did not list invoices", http_status=exc.http_status, error_type=type(exc).__name__)
            raise PaymentProviderError(
                "Stripe did not answer with the invoices; try again.", provider_status=exc.http_status
            ) from None
        STRIPE_CALL_SECONDS.labels("invoices.list", "ok").observe(time.perf_counter() - started)
        return sorted(found, key=lambda i: i.created, reverse=True)[:limit]

    async def aclose(self) -> None:
        await self._http.close_async()
