"""tenant-decommissioned → the records this service created are deleted, the customer's records we had replaced
(apex A, SPF) get their previous content back, and nothing else in the zone changes."""

from __future__ import annotations

from letsbe_contracts.events import TenantDecommissionedV1
from letsbe_dns.records.handlers import ON_TENANT_DECOMMISSIONED
from letsbe_platform.testing import eventually


async def test_decommission_removes_our_records_and_restores_the_customers(app, bus, events, cloudflare, kit, engine):
    fake = cloudflare.fake
    # The customer's own records, before LetsBe: an unrelated TXT, a record of another host, and a root A we
    # will correct (so it is tracked, but not as ours).
    fake.add_record(kit.domain, "TXT", kit.domain, "google-site-verification=abc123")
    fake.add_record(kit.domain, "A", f"shop.{kit.domain}", "192.0.2.80")
    customer_root = fake.add_record(kit.domain, "A", kit.domain, "192.0.2.44")
    # The customer's SPF (their old mail provider): our mail records replace it while the tenant lives.
    customer_spf = fake.add_record(kit.domain, "TXT", kit.domain, '"v=spf1 include:_spf.google.com ~all"')
    # Another tenant's challenge record in the same zone (e.g. a sibling subdomain tenant).
    other = fake.add_record(kit.domain, "TXT", f"_acme-challenge.other.{kit.domain}", "x" * 43)

    event = kit.server_allocated("stalwart")
    tenant_id = event.order.order_id
    await bus.publish(event, correlation_id=str(tenant_id))
    await events.wait("dns-ready", str(tenant_id))
    await bus.publish(kit.mail_ready(event), correlation_id=str(tenant_id))
    await eventually(lambda: kit.handled(engine, "dns-on-mail-ready"))
    before = {r["id"] for r in fake.records(kit.domain)}
    ours = (
        before
        - {customer_root["id"], customer_spf["id"], other["id"]}
        - {
            r["id"]
            for r in fake.records(kit.domain)
            if r["content"] in {"google-site-verification=abc123", "192.0.2.80"}
        }
    )
    assert len(ours) > 10  # wildcard + the mail records
    replaced = {
        (r["type"], r["content"])
        for r in fake.records(kit.domain)
        if r["id"] in {customer_root["id"], customer_spf["id"]}
    }
    assert ("TXT", '"v=spf1 mx ra=postmaster -all"') in replaced or ("TXT", "v=spf1 mx ra=postmaster -all") in replaced

    decommissioned = TenantDecommissionedV1(tenant_id=tenant_id, domain=kit.domain, reason="cancelled")
    for _ in range(2):  # a duplicate is harmless
        await bus.publish(decommissioned, correlation_id=str(tenant_id))
    await eventually(lambda: not ours & {r["id"] for r in fake.records(kit.domain)}, "our records gone")

    async def both_handled() -> bool:  # the duplicate has run too
        return await kit.handled(engine, ON_TENANT_DECOMMISSIONED) == 2

    await eventually(both_handled, "both decommission events handled")

    left = {(r["type"], r["name"], r["content"]) for r in fake.records(kit.domain)}
    assert left == {
        ("TXT", "example.com", "google-site-verification=abc123"),
        ("A", "shop.example.com", "192.0.2.80"),
        ("A", "example.com", "192.0.2.44"),  # the customer's records we had replaced: their content is back
        ("TXT", "example.com", '"v=spf1 include:_spf.google.com ~all"'),
        ("TXT", "_acme-challenge.other.example.com", "x" * 43),
    }
    assert fake.count("DELETE", "/dns_records/") == len(ours)


async def test_decommission_of_a_record_already_gone_is_not_an_error(app, bus, events, cloudflare, kit, engine):
    event = kit.server_allocated("ghost")
    tenant_id = event.order.order_id
    await bus.publish(event, correlation_id=str(tenant_id))
    await events.wait("dns-ready", str(tenant_id))
    fake = cloudflare.fake
    wildcard = fake.records(kit.domain, name=f"*.{kit.domain}")[0]
    fake.zone(kit.domain).records.pop(wildcard["id"])  # someone deleted it by hand in the dashboard

    await bus.publish(TenantDecommissionedV1(tenant_id=tenant_id, domain=kit.domain), correlation_id=str(tenant_id))
    await eventually(lambda: fake.records(kit.domain) == [], "the zone empty")
    from sqlalchemy import text

    async def live() -> int:
        async with engine.connect() as conn:
            q = "SELECT count(*) FROM dns.records WHERE tenant_id = :t AND deleted_at IS NULL"
            return (await conn.execute(text(q), {"t": tenant_id})).scalar_one()

    async def none_live() -> bool:
        return await live() == 0

    await eventually(none_live, "the tenant's records marked deleted", timeout=30)
    assert not events.of("dead-lettered")


async def test_a_second_apply_keeps_the_customers_content_for_the_restore(app, bus, events, cloudflare, kit, engine):
    """The tenant moves to another server (a second server-allocated with a new address): we replace our own content
    in the customer's apex record again, and decommission still restores what the customer had, not our first IP."""
    fake = cloudflare.fake
    customer_root = fake.add_record(kit.domain, "A", kit.domain, "192.0.2.44")
    first = kit.server_allocated("ghost")
    tenant_id = first.order.order_id
    await bus.publish(first, correlation_id=str(tenant_id))
    await events.wait("dns-ready", str(tenant_id))
    moved = first.model_copy(update={"server": kit.server_target("127.0.0.11")})
    await bus.publish(moved, correlation_id=str(tenant_id))
    await eventually(lambda: fake.zone(kit.domain).records[customer_root["id"]]["content"] == "127.0.0.11", "moved")

    await bus.publish(TenantDecommissionedV1(tenant_id=tenant_id, domain=kit.domain), correlation_id=str(tenant_id))
    await eventually(
        lambda: fake.zone(kit.domain).records[customer_root["id"]]["content"] == "192.0.2.44", "the customer's A back"
    )
