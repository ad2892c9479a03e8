"""Stripe Checkout through the official SDK's async client (httpx underneath), behind a small protocol.

Tests and the sandbox point ``api_base`` at ``letsbe_fakes.stripe``, which speaks Stripe's REST wire format.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

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
    # A recurring Stripe Price: the session runs in ``subscription`` mode and charges it monthly.
    price_id: str | None = None


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str | None
    status: str | None


@dataclass(frozen=True)
class PriceSpec:
    lookup_key: str
    product_name: str
    unit_amount: int
    currency: str


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

    async def ensure_price(self, spec: PriceSpec) -> str: ...

    async def create_portal_session(self, customer_id: str, return_url: str) -> str: ...

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
        # The SDK is imported by the methods that use it, not at the top: half a second of start-up for every hub
        # process and CLI, most of which never talk to Stripe.
        import stripe

        self._http = stripe.HTTPXClient(timeout=timeout)
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base.rstrip("/")},
            http_client=self._http,
            # The SDK retries 409/429/5xx and timeouts with backoff, under the same idempotency key.
            max_network_retries=max_retries,
        )

    async def create_checkout(self, request: CheckoutRequest, *, idempotency_key: str) -> CheckoutSession:
        import stripe

        order_ref = str(request.order_id)
        if request.price_id is not None:
            return await self._call(
                "checkout.create",
                self._client.v1.checkout.sessions.create_async,
                {
                    "mode": "subscription",
                    "client_reference_id": order_ref,
                    "customer_email": request.customer_email,
                    "success_url": request.success_url,
                    "cancel_url": request.cancel_url,
                    "line_items": [{"price": request.price_id, "quantity": 1}],
                    "metadata": {"order_id": order_ref, "domain": request.domain},
                    # Copied onto the Subscription, so its invoices and its end find the order too.
                    "subscription_data": {"metadata": {"order_id": order_ref, "domain": request.domain}},
                },
                idempotency_key,
                lambda s: CheckoutSession(id=s.id, url=s.url, status=s.status),
                order_id=order_ref,
            )
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

    async def ensure_price(self, spec: PriceSpec) -> str:
        """The id of the active monthly Price under ``spec.lookup_key``, created (with its Product) if there is none
        or if its amount or currency changed (the new one takes the lookup key over). Idempotency keys derived from
        the spec make replicas starting together create one Price, not one each."""
        found = await self._call(
            "prices.list",
            self._client.v1.prices.list_async,
            {"lookup_keys": [spec.lookup_key], "active": True, "limit": 1},
            None,
            lambda page: page.data[0] if page.data else None,
        )
        if found is not None and found.unit_amount == spec.unit_amount and found.currency == spec.currency:
            return found.id
        tag = f"{spec.lookup_key}-{spec.unit_amount}-{spec.currency}"
        product = await self._call(
            "products.create",
            self._client.v1.products.create_async,
            {"name": spec.product_name, "metadata": {"lookup_key": spec.lookup_key}},
            f"product-{tag}",
            lambda p: p.id,
        )
        return await self._call(
            "prices.create",
            self._client.v1.prices.create_async,
            {
                "product": product,
                "currency": spec.currency,
                "unit_amount": spec.unit_amount,
                "recurring": {"interval": "month"},
                "lookup_key": spec.lookup_key,
                "transfer_lookup_key": True,
                "metadata": {"lookup_key": spec.lookup_key},
            },
            f"price-{tag}",
            lambda p: p.id,
        )

    async def create_portal_session(self, customer_id: str, return_url: str) -> str:
        """A Stripe Billing Portal link for the customer (change plan, card, cancel); returns its url."""
        return await self._call(
            "billing_portal.create",
            self._client.v1.billing_portal.sessions.create_async,
            {"customer": customer_id, "return_url": return_url},
            None,
            lambda s: s.url,
        )

    async def _call(
        self,
        operation: str,
        method: Any,
        params: dict[str, Any],
        idempotency_key: str | None,
        result: Any,
        **log_context: Any,
    ) -> Any:
        import stripe

        started = time.perf_counter()
        try:
            answer = await method(
                params=params, options={"idempotency_key": idempotency_key} if idempotency_key else {}
            )
        except stripe.StripeError as exc:
            STRIPE_CALL_SECONDS.labels(operation, "error").observe(time.perf_counter() - started)
            log.warning(
                "stripe refused a request",
                operation=operation,
                http_status=exc.http_status,
                stripe_code=exc.code,
                error_type=type(exc).__name__,
                **log_context,
            )
            raise PaymentProviderError(
                "Stripe refused or could not be reached; nothing was saved, try again.",
                provider_status=exc.http_status,
                provider_code=exc.code,
            ) from None
        STRIPE_CALL_SECONDS.labels(operation, "ok").observe(time.perf_counter() - started)
        return result(answer)

    async def list_invoices(self, email: str, *, limit: int = 24) -> list[Invoice]:
        """The invoices of every Stripe customer with this email, newest first (empty if Stripe knows none)."""
        import stripe

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
