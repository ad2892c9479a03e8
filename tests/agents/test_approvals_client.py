"""The Safety Wrapper's approvals client (HubApprovals) against the hub's real routes."""

import uuid

import httpx
import pytest

from hub_testing.approvals import approval_body, args_hash, decide
from hub_testing.tenants import enroll
from letsbe_contracts.approvals import ApprovalCreate
from letsbe_safety_wrapper.tools.approvals import HubApprovals
from letsbe_safety_wrapper.tools.errors import ApprovalMismatch, ApprovalNotFound, ApprovalUsed, HubUnavailable


async def test_the_wrappers_client_speaks_to_the_real_hub(hub, admin):
    """HubApprovals (the Safety Wrapper's client) against these routes: request, poll, consume, refusals."""
    wrapper = await enroll(hub, admin)
    client = HubApprovals(hub, str(hub.base_url), lambda: wrapper.api_key)
    h = args_hash("e2e")
    body = ApprovalCreate(**approval_body(h))
    approval = await client.request(body)
    assert (await client.request(body)).id == approval.id
    await decide(hub, admin, approval.id)
    assert (await client.get(approval.id)).status.value == "APPROVED"
    with pytest.raises(ApprovalMismatch):
        await client.consume(approval.id, args_hash("other"))
    assert (await client.consume(approval.id, h)).status.value == "CONSUMED"
    with pytest.raises(ApprovalUsed):
        await client.consume(approval.id, h)
    with pytest.raises(ApprovalNotFound):
        await client.get(uuid.uuid4())


async def test_the_wrappers_client_without_credentials_says_so(hub):
    client = HubApprovals(hub, str(hub.base_url), lambda: None)
    with pytest.raises(HubUnavailable, match="not registered"):
        await client.get(uuid.uuid4())
    unreachable = HubApprovals(httpx.AsyncClient(), "http://127.0.0.1:9", lambda: "key")
    with pytest.raises(HubUnavailable, match="could not be reached"):
        await unreachable.get(uuid.uuid4())
