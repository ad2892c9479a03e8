"""The Stripe fake's billing objects, driven with the official stripe SDK as the hub drives Stripe: Prices by
lookup_key, subscription Checkout, the billing cycle's events (signed as Stripe signs them), Billing Portal
sessions, Stripe's error shapes, and state that survives a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from letsbe_fakes import LoopbackServer
from letsbe_fakes.stripe import StripeFake


class Receiver:
    """A webhook endpoint that checks each event with the SDK's own signature verification."""

    def __init__(self, secret: str):
        self.secret = secret
        self.events: list[stripe.Event] = []
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> JSONResponse:
        body = await request.body()
        event = stripe.Webhook.construct_event(body, request.headers["stripe-signature"], self.secret)
        self.events.append(event)
        return JSONResponse({"received": True})


def client(fake: StripeFake, url: str) -> stripe.StripeClient:
    return stripe.StripeClient(fake.api_key, base_addresses={"api": url}, http_client=stripe.HTTPXClient())


async def _price(c: stripe.StripeClient, key: str, amount: int = 4900) -> stripe.Price:
    product = await c.v1.products.create_async(params={"name": "LetsBe Build"})
    return await c.v1.prices.create_async(
        params={
            "product": product.id,
            "currency": "eur",
            "unit_amount": amount,
            "recurring": {"interval": "month"},
            "lookup_key": key,
        }
    )


def test_subscription_checkout_and_its_billing_cycle_deliver_signed_events(tmp_path: Path) -> None:
    receiver = Receiver("whsec_cycle")
    with LoopbackServer(receiver.app) as hook:
        fake = StripeFake(webhook_secret="whsec_cycle", webhook_url=hook.url + "/hook", state_dir=tmp_path)
        with LoopbackServer(fake.app) as srv:

            async def main() -> None:
                c = client(fake, srv.url)
                price = await _price(c, "letsbe_build_eu_monthly_eur")
                found = await c.v1.prices.list_async(params={"lookup_keys": ["letsbe_build_eu_monthly_eur"]})
                assert [p.id for p in found.data] == [price.id] and price.recurring.interval == "month"
                cs = await c.v1.checkout.sessions.create_async(
                    params={
                        "mode": "subscription",
                        "line_items": [{"price": price.id, "quantity": 1}],
                        "success_url": "https://example.com/ok",
                        "customer_email": "owner@example.com",
                        "subscription_data": {"metadata": {"order_id": "o-1"}},
                    }
                )
                assert cs.mode == "subscription" and cs.amount_total == 4900
                async with httpx.AsyncClient() as h:
                    done = (await h.post(f"{srv.url}/_fake/checkout/sessions/{cs.id}/complete")).json()
                    assert [e["type"] for e in done["events"]] == ["checkout.session.completed", "invoice.paid"]
                    completed = await c.v1.checkout.sessions.retrieve_async(cs.id)
                    sub = await c.v1.subscriptions.retrieve_async(completed.subscription)
                    assert sub.status == "active" and sub.metadata["order_id"] == "o-1"
                    assert sub["items"].data[0].price.id == price.id
                    customer = await c.v1.customers.retrieve_async(sub.customer)
                    assert customer.email == "owner@example.com"

                    await h.post(f"{srv.url}/_fake/subscriptions/{sub.id}/renew", params={"fail": "true"})
                    failed = receiver.events[-1]
                    assert failed.type == "invoice.payment_failed"
                    invoice = failed.data.object
                    assert invoice.parent.subscription_details.subscription == sub.id
                    assert invoice.parent.subscription_details.metadata["order_id"] == "o-1"
                    assert (await c.v1.subscriptions.retrieve_async(sub.id)).status == "past_due"

                    paid = await c.v1.invoices.pay_async(invoice.id)  # the API call delivers invoice.paid too
                    assert paid.status == "paid" and receiver.events[-1].type == "invoice.paid"
                    with pytest.raises(stripe.InvalidRequestError):
                        await c.v1.invoices.pay_async(invoice.id)
                    invoices = await c.v1.invoices.list_async(params={"customer": customer.id})
                    assert len(invoices.data) == 2

                    portal = await c.v1.billing_portal.sessions.create_async(
                        params={"customer": customer.id, "return_url": "https://example.com/account"}
                    )
                    assert portal.object == "billing_portal.session" and portal.url.startswith("https://billing.")

                    bigger = await _price(c, "letsbe_scale_eu_monthly_eur", 8900)
                    item = sub["items"].data[0].id
                    await c.v1.subscriptions.update_async(sub.id, params={"items": [{"id": item, "price": bigger.id}]})
                    updated = receiver.events[-1]
                    assert updated.type == "customer.subscription.updated"
                    assert updated.data.object["items"].data[0].price.lookup_key == "letsbe_scale_eu_monthly_eur"
                    assert updated.data.previous_attributes["items"].data[0].price.id == price.id

                    await c.v1.subscriptions.cancel_async(sub.id)
                    assert receiver.events[-1].type == "customer.subscription.deleted"
                    assert receiver.events[-1].data.object.status == "canceled"

            asyncio.run(main())
    again = StripeFake(state_dir=tmp_path)  # everything above survives a restart
    assert {s["status"] for s in again.subscriptions.values()} == {"canceled"}
    assert len(again.prices) == 2 and len(again.customers) == 1 and len(again.invoices) == 2
    assert len(again.portal_sessions) == 1


def test_errors_have_stripes_shapes() -> None:
    fake = StripeFake()
    with LoopbackServer(fake.app) as srv:

        async def main() -> None:
            c = client(fake, srv.url)
            price = await _price(c, "k")
            with pytest.raises(stripe.InvalidRequestError) as taken:
                await _price(c, "k")
            assert taken.value.code == "parameter_invalid" and taken.value.param == "lookup_key"
            moved = await c.v1.prices.create_async(
                params={
                    "product": price.product,
                    "currency": "eur",
                    "unit_amount": 1,
                    "recurring": {"interval": "month"},
                    "lookup_key": "k",
                    "transfer_lookup_key": True,
                }
            )
            assert [p.id for p in (await c.v1.prices.list_async(params={"lookup_keys": ["k"]})).data] == [moved.id]
            with pytest.raises(stripe.InvalidRequestError) as missing:
                await c.v1.subscriptions.retrieve_async("sub_nope")
            assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
            with pytest.raises(stripe.InvalidRequestError) as bad:
                await c.v1.checkout.sessions.create_async(
                    params={"mode": "subscription", "success_url": "https://x", "line_items": [{"price": "price_nope"}]}
                )
            assert bad.value.code == "resource_missing" and bad.value.param == "line_items[0][price]"
            with pytest.raises(stripe.InvalidRequestError) as portal:
                await c.v1.billing_portal.sessions.create_async(params={"customer": "cus_nope"})
            assert portal.value.code == "resource_missing"

        asyncio.run(main())
