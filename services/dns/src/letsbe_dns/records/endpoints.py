"""GET /api/v1/admin/records: the hub's read path to the records this service manages (the console's tenant page).

The caller is the hub, with the shared read token (LETSBE_DNS_READ_TOKEN here, LETSBE_HUB_DNS_READ_TOKEN there);
the token only reads. Unset here: the route answers 503 and the console says the records cannot be shown.
"""

from __future__ import annotations

import hmac
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from letsbe_contracts.dns import MAX_RECORDS, RECORDS_PATH, DnsRecord, TenantDnsRecords
from letsbe_dns.records import repository as repo
from letsbe_platform.errors import ServiceUnavailable, Unauthorized
from letsbe_platform.web import SessionDep

router = APIRouter(tags=["records"])

READ_TOKEN = HTTPBearer(
    scheme_name="dnsReadToken", auto_error=False, description="The read token (LETSBE_DNS_READ_TOKEN) the hub holds."
)


class ReadApiOff(ServiceUnavailable):
    type, title = "read-api-off", "The read API is not configured"


async def reader(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(READ_TOKEN)]
) -> None:
    token = request.app.state.settings.read_token
    if token is None:
        raise ReadApiOff("LETSBE_DNS_READ_TOKEN is not set on the DNS service.")
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise Unauthorized("Send the read token as 'Authorization: Bearer <token>'.")


@router.get(RECORDS_PATH, name="list", summary="The live records this service manages for a tenant (at most 500)")
async def list_records(
    tenant_id: uuid.UUID, session: SessionDep, _: Annotated[None, Depends(reader)]
) -> TenantDnsRecords:
    rows = await repo.live_for_tenant(session, tenant_id, MAX_RECORDS)
    return TenantDnsRecords(
        tenant_id=tenant_id, records=[DnsRecord.model_validate(r, from_attributes=True) for r in rows]
    )
