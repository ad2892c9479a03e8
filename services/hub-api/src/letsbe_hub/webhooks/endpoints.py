"""The Stripe webhook: verify the signature, store the event id once, apply it, all before answering 200."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, Request
from prometheus_client import Histogram
from pydantic import BaseModel

from letsbe_hub.billing import wiring as billing_wiring
from letsbe_hub.payments.errors import PaymentsNotConfigured
from letsbe_hub.webhooks.errors import InvalidWebhook
from letsbe_hub.webhooks.service import BILLING_TYPES, HANDLED_TYPES, claim_event, parse_event, process
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

router = APIRouter(prefix="/api/v1/public/stripe", tags=["public"])

TOLERANCE_SECONDS = 300  # Stripe's own default: a captured request cannot be replayed later than this
MAX_PAYLOAD_BYTES = 512 * 1024

STRIPE_WEBHOOK_SECONDS = Histogram(
    "hub_stripe_webhook_duration_seconds",
    "Stripe webhook processing time (verify, store, apply, commit) by event type and outcome",
    ["event_type", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


class WebhookAck(BaseModel):
    received: bool = True
    event_id: str
    outcome: str


@router.post("/webhook", name="stripe-webhook", summary="Stripe events (signed with the webhook secret)")
async def stripe_webhook(
    request: Request, stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None
) -> WebhookAck:
    started = time.perf_counter()
    event_type, outcome = "unknown", "error"
    try:
        secret = request.app.state.settings.stripe_webhook_secret
        if secret is None:
            outcome = "not-configured"
            raise PaymentsNotConfigured("Set LETSBE_HUB_STRIPE_WEBHOOK_SECRET to accept Stripe webhooks.")
        payload = await _read_capped(request, MAX_PAYLOAD_BYTES)
        if payload is None:
            outcome = "invalid"
            raise InvalidWebhook("The payload is larger than any Stripe event.")
        import stripe  # here, not at the top: the SDK is half a second of every hub process's start-up

        try:
            stripe.Webhook.construct_event(payload, stripe_signature, secret.get_secret_value(), TOLERANCE_SECONDS)
        except stripe.SignatureVerificationError:
            outcome = "bad-signature"
            log.warning("stripe webhook with a bad signature refused")
            raise InvalidWebhook(
                "The Stripe-Signature header is missing, stale or does not match the payload."
            ) from None
        except Exception:  # signed, but not a JSON event object
            outcome = "invalid"
            raise InvalidWebhook("The payload is not a Stripe event.") from None
        if _signed_at(stripe_signature or "") > time.time() + TOLERANCE_SECONDS:
            # Stripe's library only refuses old signatures; one dated ahead is replayable until that date.
            outcome = "bad-signature"
            log.warning("stripe webhook signed in the future refused")
            raise InvalidWebhook("The Stripe-Signature timestamp is in the future beyond the tolerance.")
        outcome = "invalid"
        event = parse_event(payload)
        event_type = event.type if event.type in HANDLED_TYPES else "other"
        async with unit_of_work(request.app.state.runtime.sessions) as session:
            if not await claim_event(session, event):
                outcome = "duplicate"
            else:
                outcome = await process(session, event, request.app.state.settings)
        log.info("stripe event", stripe_event_id=event.id, type=event.type, outcome=outcome)
        if event.type in BILLING_TYPES and outcome != "duplicate":
            billing_wiring.kick(request.app.state.runtime)  # its emails go out now
        return WebhookAck(event_id=event.id, outcome=outcome)
    finally:
        STRIPE_WEBHOOK_SECONDS.labels(event_type, outcome).observe(time.perf_counter() - started)


def _signed_at(header: str) -> int:
    """The ``t=`` of a Stripe-Signature header the library has already verified."""
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            return int(value)
    return 0


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it exceeds ``limit`` (without buffering the rest)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
