"""The website's order route: validation against the calculator and tier, abuse limits, subscription Checkout."""

import asyncio
import uuid

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import ValidationError

from hub_testing import hub_app
from hub_testing.billing import billing_settings, workers
from hub_testing.orders import count, post_event
from letsbe_hub.billing.prices import PriceBook
from letsbe_hub.config import HubSettings
from letsbe_hub.payments.gateway import StripeGateway
from letsbe_hub.web.limits import address_of

ROUTE = "/api/v1/public/orders"


def body(**overrides):
    b = {
        "tier": "build",
        "region": "eu",
        "tools": ["nextcloud", "ghost"],
        "domain": f"shop-{uuid.uuid4().hex[:8]}.example.com",
        "email": f"owner-{uuid.uuid4().hex[:6]}@acme.example",
    }
    b.update(overrides)
    return b


async def test_a_website_order_gets_a_subscription_checkout_and_proceeds_when_paid(
    billing_hub, stripe_fake, sessions, operator
):
    r = await billing_hub.client.post(ROUTE, json=body(tier="scale", region="us", email="Owner@Acme.example"))
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["status"] == "PENDING_PAYMENT" and answer["checkout_url"].startswith("https://checkout.stripe.com/")
    cs = stripe_fake.fake.sessions[answer["checkout_session_id"]]
    assert cs["mode"] == "subscription"
    price = stripe_fake.fake.prices[cs["_price"]]
    assert price["lookup_key"] == "letsbe_scale_us_monthly_eur"
    assert price["unit_amount"] == 8900 and price["recurring"]["interval"] == "month"

    completed, paid = stripe_fake.fake.complete_subscription(answer["checkout_session_id"])
    assert (await post_event(billing_hub.client, stripe_fake.fake, paid)).json()["outcome"] == "renewed"
    r = await post_event(billing_hub.client, stripe_fake.fake, completed)
    assert r.json()["outcome"] == "confirmed"

    order = (await billing_hub.client.get(f"/api/v1/admin/orders/{answer['order_id']}", headers=operator)).json()
    assert order["status"] == "AWAITING_SERVER" and order["created_by"] == "website"
    assert order["tier"] == "scale" and order["region"] == "us" and order["customer_email"] == "Owner@Acme.example"
    sub = completed["data"]["object"]
    assert (
        await count(
            sessions,
            "SELECT count(*) FROM hub.billing_subscriptions WHERE order_id = :o AND stripe_subscription_id = :s "
            "AND stripe_customer_id = :c AND state = 'ACTIVE' AND paid_through > now() + interval '29 days'",
            o=uuid.UUID(answer["order_id"]),
            s=sub["subscription"],
            c=sub["customer"],
        )
        == 1
    )


async def test_each_tier_and_region_gets_one_price_by_lookup_key_however_often_the_hub_starts(
    billing_hub, stripe_fake, hub_settings
):
    async def prices_ready():
        return len(stripe_fake.fake.prices) == 8

    from letsbe_platform.testing import eventually

    await eventually(prices_ready, "the start-up created a price per tier and region")
    before = dict(stripe_fake.fake.prices)
    gateway = StripeGateway(stripe_fake.fake.api_key, api_base=stripe_fake.url)
    try:
        book = PriceBook(gateway, hub_settings)  # a second replica, or the next start
        await book.warm()
        assert stripe_fake.fake.prices == before
        assert {p["lookup_key"] for p in before.values()} == {
            f"letsbe_{t}_{r}_monthly_eur" for t in ("lite", "build", "scale", "enterprise") for r in ("eu", "us")
        }
        # A price change in the settings makes a new Price that takes the lookup key over.
        changed = hub_settings.model_copy(
            update={"tier_prices_cents": {**hub_settings.tier_prices_cents, "lite": 3100}}
        )
        from letsbe_contracts.enums import Region, Tier

        new_id = await PriceBook(gateway, changed).price_for(Tier.LITE, Region.EU)
        assert new_id not in before and stripe_fake.fake.prices[new_id]["lookup_key"] == "letsbe_lite_eu_monthly_eur"
        # Configured ids are used as they are.
        configured = hub_settings.model_copy(update={"stripe_price_ids": {"build:eu": "price_configured"}})
        assert await PriceBook(None, configured).price_for(Tier.BUILD, Region.EU) == "price_configured"
    finally:
        await gateway.aclose()



async def test_a_hub_stopping_while_it_warms_its_prices_does_not_wait_for_the_rest(stripe_fake, hub_settings):
    """The warm-up asks Stripe pair by pair; a stop between two pairs ends it (the next start or the first order
    of a pair makes the rest), so a shutdown does not wait on a round trip to Stripe per tier and region."""
    gateway = StripeGateway(stripe_fake.fake.api_key, api_base=stripe_fake.url)
    try:
        await PriceBook(gateway, hub_settings).warm(stopping=lambda: len(stripe_fake.fake.prices) >= 2)
        assert len(stripe_fake.fake.prices) == 2
        await PriceBook(gateway, hub_settings).warm()  # the next start makes the rest, the two made are kept
        assert len(stripe_fake.fake.prices) == 8
    finally:
        await gateway.aclose()

BAD = [
    ("unknown tool", {"tools": ["nextcloud", "no-such-tool"]}, 422, "unprocessable"),
    ("tools do not fit the tier", {"tier": "lite", "tools": ["nextcloud", "chatwoot", "ghost", "n8n"]}, 422, None),
    ("no tools", {"tools": []}, 422, None),
    ("bad domain", {"domain": "not a domain"}, 422, None),
    ("bad email", {"email": "nobody"}, 422, None),
    ("unknown tier", {"tier": "huge"}, 422, None),
    ("unknown region", {"region": "mars"}, 422, None),
    ("extra field", {"automation_mode": "MANUAL"}, 422, None),
    ("disposable email", {"email": "x@mailinator.com"}, 422, "disposable-email"),
    ("disposable email subdomain", {"email": "x@eu.mailinator.com"}, 422, "disposable-email"),
    ("disposable by setting", {"email": "x@burner.example"}, 422, "disposable-email"),
]


@pytest.fixture
def hub_settings(database_url, nats_url, bus_namespace, stripe_fake, smtp_server):
    return billing_settings(
        database_url, nats_url, bus_namespace, stripe_fake, smtp_server, disposable_email_domains=["burner.example"]
    )


@pytest.mark.parametrize(("case", "overrides", "status", "problem"), BAD, ids=[c[0] for c in BAD])
async def test_bad_input_is_a_problem_and_changes_nothing(
    billing_hub, stripe_fake, sessions, case, overrides, status, problem
):
    r = await billing_hub.client.post(ROUTE, json=body(**overrides))
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if problem:
        assert r.json()["type"].endswith("/" + problem)
    assert await count(sessions, "SELECT count(*) FROM hub.orders") == 0
    assert not stripe_fake.fake.sessions


async def test_one_pending_order_per_email_and_per_domain(billing_hub, stripe_fake, sessions):
    first = body(email="dup@acme.example")
    assert (await billing_hub.client.post(ROUTE, json=first)).status_code == 201
    same_email = await billing_hub.client.post(ROUTE, json=body(email="DUP@acme.example"))
    assert same_email.status_code == 409 and "waiting for payment" in same_email.json()["detail"]
    same_domain = await billing_hub.client.post(ROUTE, json=body(domain=first["domain"]))
    assert same_domain.status_code == 409 and "live order" in same_domain.json()["detail"]
    # Concurrent attempts for one new address: exactly one wins.
    racing = await asyncio.gather(
        *(billing_hub.client.post(ROUTE, json=body(email="race@acme.example")) for _ in range(4))
    )
    assert sorted(r.status_code for r in racing) == [201, 409, 409, 409]
    assert await count(sessions, "SELECT count(*) FROM hub.orders") == 2
    assert len(stripe_fake.fake.sessions) == 2
    # Once the checkout expires unpaid the order is cancelled and the address may order again.
    order_id = racing[[r.status_code for r in racing].index(201)].json()
    await post_event(
        billing_hub.client, stripe_fake.fake, stripe_fake.fake.expire_event(order_id["checkout_session_id"])
    )
    assert (await billing_hub.client.post(ROUTE, json=body(email="race@acme.example"))).status_code == 201


async def test_the_rate_limit_per_address_is_shared_by_replicas_and_believes_only_trusted_proxies(
    database_url, nats_url, bus_namespace, stripe_fake, smtp_server, sessions
):
    settings = billing_settings(
        database_url,
        nats_url,
        bus_namespace,
        stripe_fake,
        smtp_server,
        public_order_rate_limit=3,
        trusted_proxies=["10.0.0.0/8"],
    )
    replica_a, replica_b = hub_app(settings, workers=workers), hub_app(settings, workers=workers)
    async with LifespanManager(replica_a) as a, LifespanManager(replica_b) as b:

        def client(app, peer):
            return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(peer, 5000)), base_url="http://hub")

        async with (
            client(a.app, "198.51.100.7") as direct_a,
            client(b.app, "198.51.100.7") as direct_b,
            client(b.app, "10.1.2.3") as proxy,
        ):
            # Bad requests count too: three attempts over two replicas use up the address's allowance.
            assert (await direct_a.post(ROUTE, json=body(tier="huge"))).status_code == 422
            assert (await direct_b.post(ROUTE, json=body())).status_code == 201
            assert (await direct_a.post(ROUTE, json=body())).status_code == 201
            refused = await direct_b.post(ROUTE, json=body())
            assert refused.status_code == 429
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert 0 < int(refused.headers["Retry-After"]) <= 3600
            # A client cannot escape by claiming another address: an untrusted peer's X-Forwarded-For is ignored.
            spoofed = await direct_a.post(ROUTE, json=body(), headers={"X-Forwarded-For": "192.0.2.99"})
            assert spoofed.status_code == 429
            # Behind the trusted proxy the client is the hop the proxy saw, even if the client prepended a lie.
            via_proxy = await proxy.post(ROUTE, json=body(), headers={"X-Forwarded-For": "198.51.100.7, 192.0.2.50"})
            assert via_proxy.status_code == 201
    assert await count(sessions, "SELECT count(*) FROM hub.orders") == 3


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("198.51.100.7", ["192.0.2.1"], [], "198.51.100.7"),
        ("10.0.0.5", ["192.0.2.1"], ["10.0.0.0/8"], "192.0.2.1"),
        ("10.0.0.5", ["6.6.6.6, 192.0.2.1, 10.0.0.9"], ["10.0.0.0/8"], "192.0.2.1"),
        ("10.0.0.5", ["6.6.6.6", "192.0.2.1"], ["10.0.0.0/8"], "192.0.2.1"),
        ("10.0.0.5", [], ["10.0.0.0/8"], "10.0.0.5"),
        ("10.0.0.5", ["garbage"], ["10.0.0.0/8"], "unknown"),
        ("2001:db8:1:2:aaaa::1", [], [], "2001:db8:1:2::/64"),
        ("10.0.0.5", ["[2001:db8::7]:443"], ["10.0.0.0/8"], "2001:db8::/64"),
        ("::ffff:192.0.2.4", [], [], "192.0.2.4"),
    ],
)
def test_client_address(peer, forwarded, trusted, expected):
    assert address_of(peer, forwarded, trusted) == expected


def test_trusted_proxies_are_networks_or_the_hub_does_not_start(database_url):
    def settings(proxies):
        return HubSettings.model_validate({"DATABASE_URL": database_url, "trusted_proxies": proxies})

    given = ["10.0.0.5/8", " 127.0.0.1", "fd00::/8"]
    assert settings(given).trusted_proxies == ["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"]
    for bad in (["nginx"], ["10.0.0.0/33"], [""]):
        with pytest.raises(ValidationError, match="trusted_proxies"):
            settings(bad)


async def test_an_operators_new_checkout_for_a_website_order_is_a_subscription_again(
    billing_hub, stripe_fake, operator
):
    r = await billing_hub.client.post(ROUTE, json=body())
    first = stripe_fake.fake.sessions[r.json()["checkout_session_id"]]
    again = await billing_hub.client.post(f"/api/v1/admin/orders/{r.json()['order_id']}/checkout", headers=operator)
    assert again.status_code == 201, again.text
    second = stripe_fake.fake.sessions[again.json()["checkout_session_id"]]
    assert second["id"] != first["id"]
    assert second["mode"] == "subscription" and second["_price"] == first["_price"]
