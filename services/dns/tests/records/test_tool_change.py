"""The DNS phase of a tool-change job (tenant task ``tool-dns``): a tool's subdomain gets its own records where the
zone refused the wildcard (and loses them when the tool is removed); where the wildcard answers for it, nothing
changes. Asked twice (the hub asks again when a report is late), the records are still there once; the
provisioner's phases are not ours."""

from __future__ import annotations

import uuid

import dns.asyncquery
import dns.message
import pytest

from letsbe_contracts.events import TenantTaskReportedV1, TenantTaskRequestedV1


async def served(port: int, name: str, rtype: str) -> list[str]:
    response = await dns.asyncquery.udp(dns.message.make_query(name, rtype), "127.0.0.1", port=port, timeout=2)
    return sorted(rd.to_text() for rrset in response.answer for rd in rrset)


def ask(allocated, action: str, tool: str, tools: tuple[str, ...], attempt: int = 1, kind: str = "tool-dns"):
    return TenantTaskRequestedV1(
        request_id=uuid.uuid4(), job_id=uuid.uuid5(allocated.order.order_id, f"{action}:{tool}"),
        tenant_id=allocated.order.order_id, attempt=attempt,
        task={"kind": kind, "action": action, "tool": tool, "server": allocated.server,
              "order": allocated.order.model_copy(update={"tools": tools})},
    )  # fmt: skip


@pytest.mark.parametrize("wildcard", [False, True], ids=["per-tool records", "wildcard"])
async def test_a_tools_subdomain_record_follows_the_tool_where_there_is_no_wildcard(
    app, bus, events, cloudflare, kit, wildcard
):
    if not wildcard:
        cloudflare.fake.refuse_wildcards(kit.domain)
    allocated = kit.server_allocated("ghost")
    tenant = str(allocated.order.order_id)
    await bus.publish(allocated, correlation_id=tenant)
    await events.wait("dns-ready", tenant)
    before = sorted((r["type"], r["name"]) for r in cloudflare.fake.records(kit.domain))

    await bus.publish(ask(allocated, "add", "umami", ("ghost", "umami"), kind="tool-stack"), correlation_id=tenant)
    for attempt in (1, 2):  # asked again: the record is there once
        await bus.publish(ask(allocated, "add", "umami", ("ghost", "umami"), attempt), correlation_id=tenant)
    reports = await events.wait("tenant-task-reported", tenant, n=2)
    added = [TenantTaskReportedV1.model_validate(e.payload) for e in reports]
    assert [(r.kind, r.attempt, r.status) for r in added] == [
        ("tool-dns", 1, "SUCCEEDED"),
        ("tool-dns", 2, "SUCCEEDED"),
    ]
    names = sorted((r["type"], r["name"]) for r in cloudflare.fake.records(kit.domain))
    if wildcard:
        assert names == before and "answers for the tool's subdomain" in added[0].changes[0]
    else:
        assert names == sorted([*before, ("A", "analytics.example.com")])
        assert added[0].changes == ("A analytics.example.com created",)
        assert added[1].changes == ("A analytics.example.com unchanged",)
        assert await served(cloudflare.dns.port, "analytics.example.com", "A") == ["127.0.0.10"]

    await bus.publish(ask(allocated, "remove", "ghost", ("umami",)), correlation_id=tenant)
    [removed] = [
        r
        for r in (
            TenantTaskReportedV1.model_validate(e.payload)
            for e in await events.wait("tenant-task-reported", tenant, n=3)
        )
        if r.job_id == ask(allocated, "remove", "ghost", ()).job_id
    ]
    assert removed.status == "SUCCEEDED"
    names = sorted((r["type"], r["name"]) for r in cloudflare.fake.records(kit.domain))
    if wildcard:
        assert names == before
    else:
        assert names == [("A", "analytics.example.com"), ("A", "example.com")]
        assert removed.changes == ("A blog.example.com deleted",)
    assert len(events.of("tenant-task-reported", tenant)) == 3  # none for the provisioner's tool-stack
