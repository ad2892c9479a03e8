"""server-allocated → Cloudflare records → verified on the authoritative DNS → dns-ready (or order-failed).

The DNS service runs in-process with its real consumers and outbox relay, on real Postgres and NATS; Cloudflare
is the loopback fake reached through the official SDK, and verification queries the fake's DNS server.
"""

from __future__ import annotations

import time
import uuid

import dns.asyncquery
import dns.message
import pytest
from sqlalchemy import text

from letsbe_contracts import DnsReadyV1, OrderFailedV1
from letsbe_platform.testing import eventually


async def served(port: int, name: str, rtype: str) -> list[str]:
    response = await dns.asyncquery.udp(dns.message.make_query(name, rtype), "127.0.0.1", port=port, timeout=2)
    return sorted(rd.to_text() for rrset in response.answer for rd in rrset)


async def tracked(engine, tenant_id: uuid.UUID) -> list[tuple[str, str, str, bool, bool]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT type, name, content, created, deleted_at IS NOT NULL FROM dns.records "
                "WHERE tenant_id = :t ORDER BY name, type"
            ),
            {"t": tenant_id},
        )
        return [tuple(r) for r in rows]


async def test_root_and_wildcard_are_created_once_when_server_allocated_arrives_three_times(
    app, bus, events, cloudflare, engine, kit
):
    event = kit.server_allocated("ghost", "nextcloud")
    order_id = str(event.order.order_id)
    # Three deliveries with three event ids (duplicates the stream cannot de-duplicate; a redelivery of one id is
    # covered by test_a_redelivered_event_is_handled_once).
    for _ in range(3):
        await bus.publish(event, correlation_id=order_id)
    ready = await events.wait("dns-ready", order_id, n=3)

    fake = cloudflare.fake
    assert fake.count("POST", "/dns_records") == 2
    assert [(r["type"], r["name"], r["content"]) for r in fake.records(kit.domain)] == [
        ("A", "*.example.com", "127.0.0.10"),
        ("A", "example.com", "127.0.0.10"),
    ]
    payload = DnsReadyV1.model_validate(ready[0].payload)
    assert {(r.type, r.name, r.content) for r in payload.records} == {
        ("A", "example.com", "127.0.0.10"),
        ("A", "*.example.com", "127.0.0.10"),
    }
    assert all(r.record_id for r in payload.records)
    assert await served(cloudflare.dns.port, "files.example.com", "A") == ["127.0.0.10"]
    assert await tracked(engine, event.order.order_id) == [
        ("A", "*.example.com", "127.0.0.10", True, False),
        ("A", "example.com", "127.0.0.10", True, False),
    ]
    assert not events.of("order-failed")


async def test_a_redelivered_event_is_handled_once(app, bus, events, cloudflare, kit):
    event = kit.server_allocated("ghost")
    order_id = str(event.order.order_id)
    event_id = uuid.uuid4()
    await bus.publish(event, correlation_id=order_id, event_id=event_id)
    await events.wait("dns-ready", order_id)
    lists_before = cloudflare.fake.count("GET", "/dns_records")

    # The same message again, past JetStream's de-duplication (as after a crash before the ack): straight to the
    # handler, which must find its inbox claim and touch nothing.
    from letsbe_dns.records.handlers import ServerAllocatedHandler

    rt = app.state.runtime
    handler = ServerAllocatedHandler(app.state.records, rt.sessions, max_deliver=3)
    delivery = _delivery(event, order_id, event_id)
    await handler(event, delivery)
    assert cloudflare.fake.count("GET", "/dns_records") == lists_before
    assert cloudflare.fake.count("POST", "/dns_records") == 2
    assert len(events.of("dns-ready", order_id)) == 1


def _delivery(event, correlation_id, event_id):
    from letsbe_dns.records.handlers import ON_SERVER_ALLOCATED
    from letsbe_platform.bus import Delivery

    class _Msg:
        async def in_progress(self) -> None:
            return None

    env = event.envelope(correlation_id=correlation_id, event_id=event_id)
    msg = _Msg()
    return Delivery(envelope=env, subject="x", num_delivered=2, msg=msg, consumer=ON_SERVER_ALLOCATED)  # type: ignore[arg-type]


async def test_a_stale_record_is_corrected_and_a_correct_one_left_alone(app, bus, events, cloudflare, engine, kit):
    fake = cloudflare.fake
    # The customer's old root record points elsewhere; the wildcard already has the right address.
    old_root = fake.add_record(kit.domain, "A", kit.domain, "192.0.2.44")
    wildcard = fake.add_record(kit.domain, "A", f"*.{kit.domain}", "127.0.0.10")
    event = kit.server_allocated("ghost", ipv4="127.0.0.10")
    await bus.publish(event, correlation_id=str(event.order.order_id))
    await events.wait("dns-ready", str(event.order.order_id))

    assert fake.count("POST", "/dns_records") == 0
    assert fake.count("PATCH", f"/dns_records/{old_root['id']}") == 1
    assert fake.count("PATCH", f"/dns_records/{wildcard['id']}") == 0
    assert [(r["id"], r["content"]) for r in fake.records(kit.domain, type="A", name=kit.domain)] == [
        (old_root["id"], "127.0.0.10")
    ]
    assert await served(cloudflare.dns.port, kit.domain, "A") == ["127.0.0.10"]
    # Both are tracked, but neither as created by us: decommission must leave the customer's records.
    assert [row[3] for row in await tracked(engine, event.order.order_id)] == [False, False]


async def test_a_new_server_ip_updates_the_records_we_created(app, bus, events, cloudflare, kit):
    first = kit.server_allocated("ghost", ipv4="127.0.0.10")
    order_id = str(first.order.order_id)
    await bus.publish(first, correlation_id=order_id)
    await events.wait("dns-ready", order_id)
    # A retry of the DNS stage after the order got another server.
    second = first.model_copy(update={"server": kit.server_target("127.0.0.11")})
    await bus.publish(second, correlation_id=order_id)
    await events.wait("dns-ready", order_id, n=2)

    assert {r["content"] for r in cloudflare.fake.records(kit.domain)} == {"127.0.0.11"}
    assert cloudflare.fake.count("POST", "/dns_records") == 2
    assert cloudflare.fake.count("PATCH", "/dns_records/") == 2
    assert await served(cloudflare.dns.port, "blog.example.com", "A") == ["127.0.0.11"]


async def test_refused_wildcard_falls_back_to_exactly_the_selected_tools_subdomains(app, bus, events, cloudflare, kit):
    cloudflare.fake.refuse_wildcards(kit.domain)
    event = kit.server_allocated("ghost", "nextcloud", "uptime_kuma", ipv6="2001:db8::10")
    await bus.publish(event, correlation_id=str(event.order.order_id))
    ready = await events.wait("dns-ready", str(event.order.order_id))

    names = {(r["type"], r["name"]) for r in cloudflare.fake.records(kit.domain)}
    expected = {"example.com", "blog.example.com", "files.example.com", "status.example.com"}
    assert names == {("A", n) for n in expected} | {("AAAA", n) for n in expected}
    assert {r.name for r in DnsReadyV1.model_validate(ready[0].payload).records} == expected
    assert await served(cloudflare.dns.port, "status.example.com", "AAAA") == ["2001:db8::10"]


async def test_stalwart_mail_records_wait_for_mail_ready_then_are_created_once_and_served(
    app, bus, events, cloudflare, engine, kit
):
    event = kit.server_allocated("stalwart")
    order_id = str(event.order.order_id)
    await bus.publish(event, correlation_id=order_id)
    await events.wait("dns-ready", order_id)
    port = cloudflare.dns.port
    # Allocated, not provisioned: no mail server listens and port 25 is closed, so no MX and no DMARC yet.
    assert await served(port, kit.domain, "MX") == []
    assert await served(port, "_dmarc.example.com", "TXT") == []
    assert {r["type"] for r in cloudflare.fake.records(kit.domain)} == {"A"}

    ready = kit.mail_ready(event)
    for _ in range(2):  # the same event twice, past the stream's de-duplication: handled once
        await bus.publish(ready, correlation_id=order_id, event_id=uuid.uuid4())
    await eventually(lambda: kit.handled(engine, "dns-on-mail-ready"), timeout=20)
    dkim = "".join(await served(port, "letsbe._domainkey.example.com", "TXT")).replace('" "', "")
    assert dkim == f'"v=DKIM1; k=rsa; p={ready.dkim_public_key}"'
    assert await served(port, kit.domain, "MX") == ["10 mail.example.com."]
    assert await served(port, kit.domain, "TXT") == ['"v=spf1 mx ra=postmaster -all"']
    assert (await served(port, "_dmarc.example.com", "TXT"))[0].startswith('"v=DMARC1; p=reject')
    assert await served(port, "_imaps._tcp.example.com", "SRV") == ["0 1 993 mail.example.com."]
    assert await served(port, "autoconfig.example.com", "CNAME") == ["mail.example.com."]
    assert await served(port, "mail.example.com", "A") == ["127.0.0.10"]
    mx = [r for r in cloudflare.fake.records(kit.domain) if r["type"] == "MX"]
    assert len(mx) == 1
    assert ("TXT", "letsbe._domainkey.example.com", ready.dkim_public_key) in {
        (t, n, c.rsplit("p=", 1)[-1]) for t, n, c, _, _ in await tracked(engine, event.order.order_id)
    }


async def test_a_customers_existing_mx_is_kept_next_to_ours(app, bus, events, cloudflare, kit, engine):
    cloudflare.fake.add_record(kit.domain, "MX", kit.domain, "backup-mx.example.net", priority=20)
    event = kit.server_allocated("stalwart")
    await bus.publish(event, correlation_id=str(event.order.order_id))
    await events.wait("dns-ready", str(event.order.order_id))
    await bus.publish(kit.mail_ready(event), correlation_id=str(event.order.order_id))
    await eventually(lambda: kit.handled(engine, "dns-on-mail-ready"), timeout=20)
    assert await served(cloudflare.dns.port, kit.domain, "MX") == ["10 mail.example.com.", "20 backup-mx.example.net."]


@pytest.mark.parametrize(
    ("inject", "message", "posts"),
    [
        (
            {
                "status": 400,
                "code": 1004,
                "message": "DNS Validation Error",
                "chain": [{"code": 9005, "message": "Content for A record must be a valid IPv4 address."}],
            },
            "1004: DNS Validation Error (9005: Content for A record must be a valid IPv4 address.)",
            2,  # the wildcard (refused) and the domain's own A record, written at the same time: neither retried
        ),
        ({"status": 403, "code": 10000, "message": "Authentication error"}, "10000: Authentication error", 2),
    ],
)
async def test_cloudflare_errors_surface_verbatim_in_order_failed(
    app, bus, events, cloudflare, kit, inject, message, posts
):
    cloudflare.fake.fail_next("POST", "/dns_records", times=5, **inject)
    event = kit.server_allocated("ghost")
    await bus.publish(event, correlation_id=str(event.order.order_id))
    failed = await events.wait("order-failed", str(event.order.order_id))

    payload = OrderFailedV1.model_validate(failed[0].payload)
    assert payload.stage == "DNS"
    assert payload.reason == message
    assert payload.retryable is False
    assert not events.of("dns-ready")
    # At most one POST per record (the first failure stops the other): an error Cloudflare answers again is not retried.
    assert 1 <= cloudflare.fake.count("POST", "/dns_records") <= posts


async def test_an_unknown_zone_fails_the_order_with_a_clear_reason(app, bus, events, kit):
    event = kit.server_allocated("ghost", domain="not-on-cloudflare.org")
    await bus.publish(event, correlation_id=str(event.order.order_id))
    failed = await events.wait("order-failed", str(event.order.order_id))
    assert "No Cloudflare zone found for not-on-cloudflare.org" in failed[0].payload["reason"]


async def test_the_zone_id_from_the_order_is_used_without_a_lookup(app, bus, events, cloudflare, kit):
    zone = cloudflare.fake.zone(kit.domain)
    event = kit.server_allocated("ghost", zone_id=zone.id)
    await bus.publish(event, correlation_id=str(event.order.order_id))
    await events.wait("dns-ready", str(event.order.order_id))
    assert cloudflare.fake.count("GET", "/zones?") == 0
    assert cloudflare.fake.count("GET", f"/zones/{zone.id}") >= 1


async def test_rate_limits_are_waited_out_as_retry_after_says(app, bus, events, cloudflare, kit):
    cloudflare.fake.rate_limit_next(2, retry_after=1, method="POST")
    event = kit.server_allocated("ghost")
    started = time.monotonic()
    await bus.publish(event, correlation_id=str(event.order.order_id))
    await events.wait("dns-ready", str(event.order.order_id))
    # Two records written at the same time, each refused once: each waits its one second, then is sent again.
    assert time.monotonic() - started >= 1.0
    assert len(cloudflare.fake.records(kit.domain)) == 2
    assert cloudflare.fake.count("POST") == 4
    assert not events.of("order-failed")


@pytest.fixture
def settings(make_settings, request):
    # Tests below need retries exhausted quickly; the rest use the defaults of the shared fixture.
    return make_settings(**getattr(request, "param", {}))


@pytest.mark.parametrize("settings", [{"cloudflare_max_retries": 0}], indirect=True)
async def test_a_cloudflare_outage_fails_the_order_after_the_last_attempt(app, bus, events, cloudflare, kit, settings):
    cloudflare.fake.fail_next(
        None, "/zones", status=503, code=10000, message="Service temporarily unavailable", times=99
    )
    event = kit.server_allocated("ghost")
    await bus.publish(event, correlation_id=str(event.order.order_id))
    failed = await events.wait("order-failed", str(event.order.order_id))
    payload = OrderFailedV1.model_validate(failed[0].payload)
    assert payload.reason == "10000: Service temporarily unavailable"
    assert payload.retryable is True
    assert cloudflare.fake.count("GET", "/zones") == settings.consumer_max_deliver


async def test_dns_ready_waits_until_the_nameservers_serve_the_records(app, bus, events, cloudflare, kit):
    cloudflare.fake.dns_delay(1.0)
    event = kit.server_allocated("ghost")
    started = time.monotonic()
    await bus.publish(event, correlation_id=str(event.order.order_id))
    await events.wait("dns-ready", str(event.order.order_id))
    assert time.monotonic() - started >= 1.0


@pytest.mark.parametrize(
    "settings",
    [{"verify_first_interval_seconds": 0.002, "verify_interval_seconds": 3600, "verify_timeout_seconds": 7200}],
    indirect=True,
)
async def test_records_served_shortly_after_writing_are_seen_by_the_early_checks_not_after_the_interval(
    app, bus, events, cloudflare, kit
):
    """The checks start a few ms apart and back off: with an hour as the interval, only they can see these."""
    cloudflare.fake.dns_delay(0.2)
    event = kit.server_allocated("ghost")
    await bus.publish(event, correlation_id=str(event.order.order_id))
    await events.wait("dns-ready", str(event.order.order_id))


@pytest.mark.parametrize("settings", [{"verify_timeout_seconds": 0.3}], indirect=True)
async def test_records_never_served_fail_the_order_after_the_bounded_wait(app, bus, events, cloudflare, kit):
    cloudflare.fake.dns_delay(60)
    event = kit.server_allocated("ghost")
    await bus.publish(event, correlation_id=str(event.order.order_id))
    failed = await events.wait("order-failed", str(event.order.order_id))
    assert "not served by the zone's nameservers" in failed[0].payload["reason"]
    assert "A example.com 127.0.0.10" in failed[0].payload["reason"]
