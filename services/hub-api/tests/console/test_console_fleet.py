"""The fleet list's disk, memory, token usage and backups, and a tenant's DNS records read from the DNS service
(a loopback stand-in of its read API here: the hub's tests never import the DNS service)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse

from hub_testing.tenants import enroll
from letsbe_contracts.dns import RECORDS_PATH
from letsbe_fakes import LoopbackServer
from letsbe_hub.app import create_app
from letsbe_hub.config import HubSettings
from letsbe_hub.llm import repository as llm_repo
from letsbe_platform.db import unit_of_work

from .test_console_pages import HUB, XSS, client_for, jane, signed_in  # noqa: F401 - fixtures

READ_TOKEN = "dns-read-" + uuid.uuid4().hex
GB = 1024**3


class DnsReadStandIn:
    """GET /api/v1/admin/records as the DNS service answers it (letsbe_contracts.dns), records set by the test."""

    def __init__(self) -> None:
        self.records: dict[str, list[dict]] = {}
        self.app = FastAPI()

        @self.app.get(RECORDS_PATH)
        async def records(tenant_id: uuid.UUID, authorization: str | None = Header(default=None)) -> JSONResponse:
            if authorization != f"Bearer {READ_TOKEN}":
                return JSONResponse({"status": 401, "title": "Authentication required"}, status_code=401)
            return JSONResponse({"tenant_id": str(tenant_id), "records": self.records.get(str(tenant_id), [])})


@pytest.fixture
def dns() -> Iterator[tuple[DnsReadStandIn, str]]:
    stand_in = DnsReadStandIn()
    with LoopbackServer(stand_in.app) as srv:
        yield stand_in, srv.url


def settings_for(database_url: str, nats_url: str, bus_namespace: str, **values) -> HubSettings:
    from hub_testing.console import TOTP_KEY

    return HubSettings.model_validate({
        "DATABASE_URL": database_url, "NATS_URL": nats_url, "LETSBE_BUS_NAMESPACE": bus_namespace, "log_json": False,
        "operator_totp_key": TOTP_KEY, "public_url": HUB, "dns_read_token": READ_TOKEN, "dns_timeout_seconds": 2,
        **values})


@pytest_asyncio.fixture
async def console(database_url, nats_url, bus_namespace, dns) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(database_url, nats_url, bus_namespace, dns_url=dns[1]))
    async with LifespanManager(app), client_for(app) as c:
        yield c


async def test_a_tenants_dns_records_are_shown_escaped(console, dns, jane, admin):  # noqa: F811
    await signed_in(console, jane)
    agent = await enroll(console, admin)
    dns[0].records[str(agent.tenant_id)] = [
        {"type": "A", "name": agent.domain, "content": "192.0.2.7", "priority": None, "purpose": "root",
         "created": True, "updated_at": datetime.now(UTC).isoformat()},
        {"type": "TXT", "name": f"_x.{agent.domain}", "content": XSS, "priority": None, "purpose": "tool:files",
         "created": False, "updated_at": datetime.now(UTC).isoformat(), "added_later": 1},
        {"type": "MX", "name": agent.domain, "content": f"mail.{agent.domain}", "priority": 10, "purpose": "mail-mx",
         "created": True, "updated_at": datetime.now(UTC).isoformat()},
    ]
    page = await console.get(f"/console/tenants/{agent.tenant_id}")
    assert page.status_code == 200, page.text
    assert "192.0.2.7" in page.text and f"10 mail.{agent.domain}" in page.text and "content replaced" in page.text
    assert "<script>alert" not in page.text and "<img src=x" not in page.text and "&lt;script&gt;alert(" in page.text
    assert 'id="dns-problem"' not in page.text


@pytest.mark.parametrize("values, says", [
    ({"dns_url": "http://127.0.0.1:9"}, "could not be reached"),  # nothing listens on the discard port
    ({"dns_read_token": "not-the-one"}, "refused the hub&#39;s read token"),
    ({"dns_read_token": None}, "no read token"),
])
async def test_the_tenant_page_says_why_when_the_dns_service_cannot_answer(
    database_url, nats_url, bus_namespace, dns, jane, admin, values, says):  # noqa: F811
    app = create_app(settings_for(database_url, nats_url, bus_namespace, **{"dns_url": dns[1], **values}))
    async with LifespanManager(app), client_for(app) as console:
        await signed_in(console, jane)
        agent = await enroll(console, admin)
        page = await console.get(f"/console/tenants/{agent.tenant_id}")
    assert page.status_code == 200 and 'id="dns-problem"' in page.text and says in page.text, page.text[-3000:]


async def test_the_fleet_list_shows_disk_memory_tokens_and_backups(console, jane, admin, sessions):  # noqa: F811
    await signed_in(console, jane)
    agent = await enroll(console, admin)
    quiet = await enroll(console, admin)
    details = {"disk": {"path": "/", "total_bytes": 80 * GB, "used_bytes": 76 * GB, "percent": 95.0},
               "memory": {"total_bytes": 8 * GB, "available_bytes": 6 * GB, "percent": 25.0},
               "versions": {"safety-wrapper": "1.0.0"}}
    r = await console.post("/api/v1/tenant/heartbeat", json={"seq": 1, "version": "1.0.0", "details": details},
                           headers=agent.headers)
    assert r.status_code == 200, r.text
    r = await console.post("/api/v1/tenant/backup-reports", headers=agent.headers, json={
        "report_date": "2026-12-01", "checked_at": datetime.now(UTC).isoformat(), "status": None,
        "problem": "no backup-status.json"})
    assert r.status_code in (200, 201, 202), r.text
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    async with unit_of_work(sessions) as session:
        await llm_repo.add_usage(session, agent.tenant_id, hour, "gpt-4o", 1_000_000, 250_000)
    page = await console.get("/console/tenants")
    assert page.status_code == 200, page.text
    row = page.text.split(f'/console/tenants/{agent.tenant_id}"')[1].split("</tr>")[0]
    assert "95 % of 80.0 GB" in row and "25 % of 8.0 GB" in row
    assert "1,250,000 (25 % of 5,000,000)" in row  # the build tier's monthly allowance
    assert "2026-12-01: no backup-status.json" in row
    other = page.text.split(f'/console/tenants/{quiet.tenant_id}"')[1].split("</tr>")[0]
    assert "none reported" in other and "0 (0 %" in other
    tenant = await console.get(f"/console/tenants/{agent.tenant_id}")
    assert "95 % of 80.0 GB used" in tenant.text and "1,250,000 of 5,000,000 included" in tenant.text
