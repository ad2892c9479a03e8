"""The Hub routes the provisioner uses (our own Hub's admin API, scope tenants:enroll)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from pydantic import ValidationError

from letsbe_contracts.hub import BackupTarget, LlmKey, RegistrationToken, TenantStatus
from letsbe_platform.tls import client_context


class HubError(Exception):
    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


class HubClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0):
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}"},
            verify=client_context(),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise HubError(f"hub unreachable: {type(exc).__name__}", transient=True) from exc
        if r.status_code >= 500 or r.status_code == 429:
            raise HubError(f"hub answered {r.status_code} on {method} {path}", transient=True)
        if r.status_code == 204:
            return None
        if r.status_code >= 400:
            detail = r.headers.get("content-type", "").endswith("json") and r.json().get("detail")
            raise HubError(f"hub refused {method} {path}: {r.status_code} {detail or ''}".strip(), transient=False)
        return r.json()

    async def registration_token(self, tenant_id: uuid.UUID, body: dict[str, Any]) -> RegistrationToken:
        data = await self._call("POST", f"/api/v1/admin/tenants/{tenant_id}/registration-tokens", json=body)
        try:
            return RegistrationToken.model_validate(data)
        except ValidationError as exc:
            raise HubError(f"unexpected registration-token answer: {exc.errors()[0]['msg']}", transient=False) from exc

    async def llm_key(self, tenant_id: uuid.UUID) -> LlmKey:
        """A new LLM relay key for the tenant (the tenant must exist: registration tokens create it)."""
        data = await self._call("POST", f"/api/v1/admin/tenants/{tenant_id}/llm-key")
        try:
            return LlmKey.model_validate(data)
        except ValidationError as exc:
            raise HubError(f"unexpected llm-key answer: {exc.errors()[0]['msg']}", transient=False) from exc

    async def backup_target(self, tenant_id: uuid.UUID) -> BackupTarget | None:
        """The tenant's off-site backup target (the same one each time); None when the hub has no off-site storage
        configured (409)."""
        try:
            data = await self._call("POST", f"/api/v1/admin/tenants/{tenant_id}/backup-target")
        except HubError as exc:
            if "409" in str(exc):
                return None
            raise
        try:
            return BackupTarget.model_validate(data)
        except ValidationError as exc:
            raise HubError(f"unexpected backup-target answer: {exc.errors()[0]['msg']}", transient=False) from exc

    async def tenant(self, tenant_id: uuid.UUID) -> TenantStatus | None:
        try:
            data = await self._call("GET", f"/api/v1/admin/tenants/{tenant_id}")
        except HubError as exc:
            if "404" in str(exc):
                return None
            raise
        try:
            return TenantStatus.model_validate(data)
        except ValidationError as exc:
            raise HubError(f"unexpected tenant answer: {exc.errors()[0]['msg']}", transient=True) from exc

    async def put_credentials(self, tenant_id: uuid.UUID, credentials: list[dict[str, str]]) -> None:
        """The tools' admin logins, for the customer's one-time reveal (the hub keeps them encrypted)."""
        await self._call("PUT", f"/api/v1/admin/tenants/{tenant_id}/credentials", json={"credentials": credentials})
