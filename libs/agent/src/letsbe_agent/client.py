"""The agent's HTTP client for the hub's tenant API. Typed errors say what the caller should do next."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from letsbe_agent.wire import (
    CommandAckResponse,
    CommandOut,
    CommandsResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
    RotatedCredential,
    checked,
    dump,
    parse,
)
from letsbe_platform.tls import client_context


class HubError(Exception):
    pass


class HubUnavailable(HubError):
    """Network error, timeout, 5xx or 429: try again later (with backoff); nothing was decided."""


class ReEnrolRequired(HubError):
    """The hub does not know this credential (revoked or unknown): register again with a new token."""


class RegistrationRefused(HubError):
    """The registration token is unknown, used or expired: wait for a new one."""


class Rejected(HubError):
    """The hub refused the request for good (4xx): retrying the same body cannot help."""

    def __init__(self, status: int, body: Any):
        super().__init__(f"hub refused with {status}: {body}")
        self.status = status
        self.body = body


class HubClient:
    def __init__(self, base_url: str, *, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None):
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
            headers={"User-Agent": "letsbe-agent"},
            verify=client_context(),
        )
        self.api_key: str | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, *, json: Any = None, timeout: float | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            r = await self._http.request(
                method,
                path,
                json=json,
                headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise HubUnavailable(f"{method} {path}: {type(exc).__name__}") from exc
        if r.status_code >= 500 or r.status_code in (408, 429):
            raise HubUnavailable(f"{method} {path}: {r.status_code}")
        if r.status_code == 401:
            body = _body(r)
            if isinstance(body, dict) and body.get("re_enrol") is True:
                raise ReEnrolRequired(str(body.get("detail", "re-enrol")))
            raise RegistrationRefused(str(body.get("detail") if isinstance(body, dict) else body))
        if r.status_code >= 400:
            raise Rejected(r.status_code, _body(r))
        return _body(r) if r.content else None

    # --- the protocol --------------------------------------------------------------------------------------

    async def register(self, body: RegisterRequest) -> RegisterResponse:
        self.api_key = None
        data = await self.request("POST", "/api/v1/tenant/register", json=dump(checked(body)))
        return parse(RegisterResponse, data)

    async def heartbeat(self, body: HeartbeatRequest) -> HeartbeatResponse:
        data = await self.request(
            "POST", "/api/v1/tenant/heartbeat", json=dump(checked(body), exclude_none=True)
        )
        return parse(HeartbeatResponse, data)

    async def pull(self, wait: int) -> list[CommandOut]:
        data = await self.request("GET", f"/api/v1/tenant/commands?wait={wait}", timeout=wait + 15.0)
        return parse(CommandsResponse, data).commands

    async def ack(self, command_id: uuid.UUID) -> CommandAckResponse:
        return parse(CommandAckResponse, await self.request("POST", f"/api/v1/tenant/commands/{command_id}/ack"))

    async def rotate(self) -> RotatedCredential:
        return parse(RotatedCredential, await self.request("POST", "/api/v1/tenant/credentials/rotate"))


def _body(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text[:500]
