"""A tenant's DNS records for its console page, read from the DNS service (which owns them) over its read API.

A page must never fail because of it: any trouble (not configured, not answering, refusing the token) is a sentence
the page shows instead of the records.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import httpx
from pydantic import ValidationError

from letsbe_contracts.dns import RECORDS_PATH, DnsRecord, TenantDnsRecords
from letsbe_hub.config import HubSettings
from letsbe_platform import tls
from letsbe_platform.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class DnsRecords:
    records: list[DnsRecord] = field(default_factory=list)
    problem: str | None = None  # why the records cannot be shown


async def tenant_records(settings: HubSettings, tenant_id: uuid.UUID) -> DnsRecords:
    if settings.dns_read_token is None:
        return DnsRecords(problem="The hub has no read token for the DNS service (LETSBE_HUB_DNS_READ_TOKEN).")
    headers = {"Authorization": f"Bearer {settings.dns_read_token.get_secret_value()}"}
    try:
        # One short-lived client per page view: operators open tenant pages now and then, never in a loop.
        async with httpx.AsyncClient(
            base_url=settings.dns_url, timeout=settings.dns_timeout_seconds, verify=tls.client_context()
        ) as client:
            r = await client.get(RECORDS_PATH, params={"tenant_id": str(tenant_id)}, headers=headers)
    except httpx.HTTPError as exc:
        log.warning("dns service unreachable", tenant_id=str(tenant_id), error=type(exc).__name__)
        return DnsRecords(problem=f"The DNS service could not be reached ({type(exc).__name__}); try again later.")
    if r.status_code == 401:
        return DnsRecords(problem="The DNS service refused the hub's read token (LETSBE_HUB_DNS_READ_TOKEN must equal "
                                  "LETSBE_DNS_READ_TOKEN).")
    if r.status_code != 200:
        log.warning("dns service answered an error", tenant_id=str(tenant_id), status=r.status_code)
        return DnsRecords(problem=f"The DNS service answered {r.status_code}; its records cannot be shown now.")
    try:
        return DnsRecords(records=TenantDnsRecords.model_validate_json(r.content).records)
    except ValidationError:
        return DnsRecords(problem="The DNS service's answer was not a list of records.")
