"""switch-dns (a hub restore/recovery/migration job's last tenant task): the tenant's records move to its new
server's address, verified on the authoritative DNS, and the switch is reported to the hub once per request."""

from __future__ import annotations

import uuid

import dns.asyncquery
import dns.message

from letsbe_contracts.events import TenantTaskReportedV1, TenantTaskRequestedV1


async def served(port: int, name: str, rtype: str) -> list[str]:
    response = await dns.asyncquery.udp(dns.message.make_query(name, rtype), "127.0.0.1", port=port, timeout=2)
    return sorted(rd.to_text() for rrset in response.answer for rd in rrset)


async def test_switch_dns_moves_the_records_to_the_new_server_and_reports_once(app, bus, events, cloudflare, kit):
    allocated = kit.server_allocated("nextcloud")
    tenant = str(allocated.order.order_id)
    await bus.publish(allocated, correlation_id=tenant)
    await events.wait("dns-ready", tenant)

    switch = TenantTaskRequestedV1(
        request_id=uuid.uuid4(), job_id=uuid.uuid4(), tenant_id=allocated.order.order_id, attempt=1,
        task={"kind": "switch-dns", "order": allocated.order, "server": kit.server_target("127.0.0.20")},
    )  # fmt: skip
    for _ in range(2):  # the same request delivered twice (the outbox relay retried): done and reported once
        await bus.publish(switch, correlation_id=tenant, event_id=switch.request_id)
    restore = switch.task.model_copy(update={"kind": "restore"})
    await bus.publish(switch.model_copy(update={"request_id": uuid.uuid4(), "task": restore}), correlation_id=tenant)

    (report,) = await events.wait("tenant-task-reported", tenant)
    done = TenantTaskReportedV1.model_validate(report.payload)
    assert (done.request_id, done.status, done.kind) == (switch.request_id, "SUCCEEDED", "switch-dns")
    assert "point at 127.0.0.20" in (done.detail or "")
    assert [(r["name"], r["content"]) for r in cloudflare.fake.records(kit.domain)] == [
        ("*.example.com", "127.0.0.20"),
        ("example.com", "127.0.0.20"),
    ]
    assert await served(cloudflare.dns.port, "example.com", "A") == ["127.0.0.20"]
    assert len(events.of("tenant-task-reported", tenant)) == 1
