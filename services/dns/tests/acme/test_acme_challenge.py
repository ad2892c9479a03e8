"""POST / DELETE /api/v1/tenant/acme-challenge: DNS-01 for the tenant's own names only.

Agents authenticate with their hub credential, which the DNS service forwards to the hub's GET /api/v1/tenant/me;
here a stand-in of that one route of our own hub (HubMeStandIn, conftest) answers on loopback.
"""

from __future__ import annotations

import dns.asyncquery
import dns.message
import pytest
from fastapi import FastAPI

from letsbe_fakes import LoopbackServer

VALIDATION = "gfj9Xq-Xvv9fZV5vC3jYSo6bVv0AjhQ7q4H2o4NYWLM"
OTHER_VALIDATION = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FyYmE"


@pytest.fixture
def settings(make_settings, hub):
    return make_settings(hub_url=hub[1])


async def txt_served(port: int, name: str) -> list[str]:
    response = await dns.asyncquery.udp(dns.message.make_query(name, "TXT"), "127.0.0.1", port=port, timeout=2)
    return sorted(b"".join(rd.strings).decode() for rrset in response.answer for rd in rrset)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_the_tenant_sets_a_challenge_and_it_is_served_when_the_call_returns(client, hub, cloudflare, kit):
    stand_in, _ = hub
    key, _ = stand_in.enrol(kit.domain)
    cloudflare.fake.dns_delay(0.5)  # the answer must wait for the nameservers, not just for Cloudflare's API

    r = await client.post(
        "/api/v1/tenant/acme-challenge", json={"domain": kit.domain, "validation": VALIDATION}, headers=auth(key)
    )

    assert r.status_code == 201, r.text
    assert r.json()["name"] == "_acme-challenge.example.com"
    assert r.json()["visible"] is True
    assert await txt_served(cloudflare.dns.port, "_acme-challenge.example.com") == [VALIDATION]


async def test_apex_and_wildcard_challenges_coexist_and_are_removed_one_by_one(client, hub, cloudflare, kit):
    stand_in, _ = hub
    key, _ = stand_in.enrol(kit.domain)
    url = "/api/v1/tenant/acme-challenge"
    name = "_acme-challenge.example.com"
    for value, domain in ((VALIDATION, kit.domain), (OTHER_VALIDATION, f"*.{kit.domain}")):
        r = await client.post(url, json={"domain": domain, "validation": value}, headers=auth(key))
        assert r.status_code == 201, r.text
    # Setting the same value again (a hook retried) creates nothing new.
    r = await client.post(url, json={"domain": kit.domain, "validation": VALIDATION}, headers=auth(key))
    assert r.status_code == 201
    assert await txt_served(cloudflare.dns.port, name) == sorted([VALIDATION, OTHER_VALIDATION])
    assert cloudflare.fake.count("POST", "/dns_records") == 2

    r = await client.request("DELETE", url, json={"domain": kit.domain, "validation": VALIDATION}, headers=auth(key))
    assert r.status_code == 204
    assert await txt_served(cloudflare.dns.port, name) == [OTHER_VALIDATION]
    r = await client.request("DELETE", url, json={"domain": kit.domain, "validation": VALIDATION}, headers=auth(key))
    assert r.status_code == 204  # already gone: fine
    assert cloudflare.fake.count("DELETE", "/dns_records/") == 1


async def test_a_name_below_the_tenants_domain_is_allowed(client, hub, cloudflare, kit):
    stand_in, _ = hub
    key, _ = stand_in.enrol(kit.domain)
    body = {"domain": f"files.{kit.domain}", "validation": VALIDATION}
    r = await client.post("/api/v1/tenant/acme-challenge", json=body, headers=auth(key))
    assert r.status_code == 201, r.text
    assert await txt_served(cloudflare.dns.port, "_acme-challenge.files.example.com") == [VALIDATION]


async def test_a_tenant_cannot_set_a_challenge_for_another_domain(client, hub, cloudflare, kit):
    stand_in, _ = hub
    key, _ = stand_in.enrol(kit.domain)
    cloudflare.fake.add_zone("example.net")
    cases = {
        "other-tenant.example.net": 403,  # another tenant's domain
        "example.com.evil.org": 403,  # starts with the tenant's name, but is not below it
        "notexample.com": 403,  # same suffix, different name
        "com": 422,  # above the tenant's domain: not a domain name at all
    }
    for domain, status in cases.items():
        body = {"domain": domain, "validation": VALIDATION}
        r = await client.post("/api/v1/tenant/acme-challenge", json=body, headers=auth(key))
        assert r.status_code == status, (domain, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    assert cloudflare.fake.count("POST", "/dns_records") == 0


async def test_a_tenant_cannot_remove_another_tenants_challenge(client, hub, cloudflare, kit):
    stand_in, _ = hub
    owner, _ = stand_in.enrol(kit.domain)
    intruder, _ = stand_in.enrol("example.net")
    url = "/api/v1/tenant/acme-challenge"
    body = {"domain": kit.domain, "validation": VALIDATION}
    assert (await client.post(url, json=body, headers=auth(owner))).status_code == 201
    r = await client.request("DELETE", url, json=body, headers=auth(intruder))
    assert r.status_code == 403
    assert await txt_served(cloudflare.dns.port, "_acme-challenge.example.com") == [VALIDATION]


async def test_without_a_valid_agent_credential_the_answer_is_401(client, cloudflare, kit):
    body = {"domain": kit.domain, "validation": VALIDATION}
    for headers, re_enrol in (({}, False), ({"Authorization": "Bearer lbk_unknown"}, True)):
        r = await client.post("/api/v1/tenant/acme-challenge", json=body, headers=headers)
        assert r.status_code == 401
        assert r.json().get("re_enrol", False) is re_enrol
    assert cloudflare.fake.count("POST", "/dns_records") == 0


async def test_a_malformed_request_is_422_and_changes_nothing(client, hub, cloudflare, kit):
    stand_in, _ = hub
    key, _ = stand_in.enrol(kit.domain)
    bodies = [
        {"domain": "example.com"},
        {"domain": "example.com", "validation": "short"},
        {"domain": "example.com", "validation": 'x" ; rm -rf / #xxxxxxxxxxxxxxxxxxxxxxxxxxx'},
        {"domain": "exa mple.com", "validation": VALIDATION},
        {"domain": "example.com", "validation": VALIDATION, "extra": 1},
    ]
    for body in bodies:
        r = await client.post("/api/v1/tenant/acme-challenge", json=body, headers=auth(key))
        assert r.status_code == 422, body
    assert cloudflare.fake.count("POST", "/dns_records") == 0


@pytest.fixture
def dead_hub_url():
    # A port that answered once and is closed now: connection refused, fast.
    with LoopbackServer(FastAPI()) as srv:
        url = srv.url
    return url


@pytest.fixture
def settings_dead_hub(make_settings, dead_hub_url):
    return make_settings(hub_url=dead_hub_url)


async def test_when_the_hub_cannot_be_asked_the_answer_is_503(settings_dead_hub, cloudflare, kit):
    import httpx
    from asgi_lifespan import LifespanManager

    from letsbe_dns.app import create_app

    app = create_app(settings_dead_hub)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as c,
    ):
        r = await c.post(
            "/api/v1/tenant/acme-challenge",
            json={"domain": kit.domain, "validation": VALIDATION},
            headers=auth("lbk_x"),
        )
    assert r.status_code == 503
    assert cloudflare.fake.count("POST", "/dns_records") == 0


async def test_a_challenge_is_tracked_for_decommission(client, hub, cloudflare, kit, engine):
    from sqlalchemy import text

    stand_in, _ = hub
    key, tenant_id = stand_in.enrol(kit.domain)
    r = await client.post(
        "/api/v1/tenant/acme-challenge", json={"domain": kit.domain, "validation": VALIDATION}, headers=auth(key)
    )
    assert r.status_code == 201
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT purpose, created, name FROM dns.records WHERE tenant_id = :t"), {"t": tenant_id}
            )
        ).all()
    assert [tuple(row) for row in rows] == [("acme-challenge", True, "_acme-challenge.example.com")]
