"""The DNS service's HTTP answers that other services read (the hub's console shows a tenant's records): extra
fields ignored, so the DNS service may add some."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

RECORDS_PATH = "/api/v1/admin/records"  # ?tenant_id=…, with LETSBE_DNS_READ_TOKEN as the bearer
MAX_RECORDS = 500  # a tenant has a few dozen (root, wildcard, tools, mail); the answer is bounded all the same


class DnsRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    name: str
    content: str
    priority: int | None = None
    purpose: str  # root, wildcard, tool:files, mail-mx, acme-challenge…
    created: bool  # True: the DNS service created it; False: the customer's record whose content it replaced
    updated_at: datetime


class TenantDnsRecords(BaseModel):
    """GET /api/v1/admin/records?tenant_id=…: the live records the DNS service manages for the tenant."""

    model_config = ConfigDict(extra="ignore")

    tenant_id: uuid.UUID
    records: list[DnsRecord]
