"""Where gated calls get their approval: the hub (``/api/v1/tenant/approvals``), behind a small protocol."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Protocol

import httpx

from letsbe_contracts.approvals import Approval, ApprovalConsume, ApprovalCreate
from letsbe_safety_wrapper.tools.errors import (
    ApprovalExpired,
    ApprovalMismatch,
    ApprovalNotFound,
    ApprovalUsed,
    HubUnavailable,
)


class ApprovalAuthority(Protocol):
    async def request(self, body: ApprovalCreate) -> Approval:
        """Create an approval request (or get the pending one for the same call)."""

    async def get(self, approval_id: uuid.UUID) -> Approval:
        """The approval as the hub sees it now; ApprovalNotFound if it is not this tenant's."""

    async def consume(self, approval_id: uuid.UUID, args_hash: str) -> Approval:
        """APPROVED → CONSUMED for exactly this hash, once; raises ApprovalUsed / Expired / Mismatch."""


class HubApprovals:
    """The hub's tenant API, authenticated with the agent's credential (read fresh for each call, so a
    re-enrolment or key rotation by the agent runtime is picked up without a restart)."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, api_key: Callable[[], str | None]):
        self._client = client
        self._base = base_url.rstrip("/") + "/api/v1/tenant/approvals"
        self._api_key = api_key

    async def request(self, body: ApprovalCreate) -> Approval:
        return await self._call("POST", self._base, body.model_dump(mode="json"))

    async def get(self, approval_id: uuid.UUID) -> Approval:
        return await self._call("GET", f"{self._base}/{approval_id}", None)

    async def consume(self, approval_id: uuid.UUID, args_hash: str) -> Approval:
        body = ApprovalConsume(args_hash=args_hash).model_dump(mode="json")
        return await self._call("POST", f"{self._base}/{approval_id}/consume", body)

    async def _call(self, method: str, url: str, body: dict | None) -> Approval:
        key = self._api_key()
        if not key:
            raise HubUnavailable("This agent is not registered with the hub yet, so no approval can be asked for.")
        try:
            resp = await self._client.request(method, url, json=body, headers={"Authorization": f"Bearer {key}"})
        except httpx.HTTPError as exc:
            raise HubUnavailable(f"The hub could not be reached ({type(exc).__name__}).") from exc
        if resp.status_code in (200, 201):
            return Approval.model_validate(resp.json())
        problem_type = _problem_type(resp)
        if resp.status_code == 404:
            raise ApprovalNotFound("The hub knows no such approval for this tenant.")
        if resp.status_code == 409:
            if problem_type.endswith("approval-expired"):
                raise ApprovalExpired("The approval expired before it was used.")
            raise ApprovalUsed("The approval was already used or is not approved.")
        if resp.status_code == 403 and problem_type.endswith("approval-mismatch"):
            raise ApprovalMismatch("The approval was granted for different arguments.")
        raise HubUnavailable(f"The hub answered {resp.status_code} to an approval call.")


def _problem_type(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return ""
    return str(body.get("type", "")) if isinstance(body, dict) else ""
