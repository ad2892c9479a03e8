"""Netcup RS G12 (the primary pool, seed §6.1) over the Server Control Panel (SCP) REST API.

What is used here, as documented in netcup's SCP OpenAPI spec (served at ``/scp-core/api/v1/openapi``) and its
authentication guide:

- base URL ``https://www.servercontrolpanel.de/scp-core``; every call carries ``Authorization: Bearer <access>``;
- the access token (valid 300 s) comes from the Keycloak realm ``scp``: ``POST /realms/scp/protocol/openid-connect/
  token`` with ``client_id=scp``, ``grant_type=refresh_token`` and an *offline* refresh token an operator created
  once with the device-code flow;
- ``GET /api/v1/servers/{serverId}?loadServerLiveInfo=true`` → ``serverLiveInfo.state`` (RUNNING, SHUTOFF, ...);
- ``POST /api/v1/servers/{serverId}/snapshots`` ``{name, description, onlineSnapshot}`` → 202 + TaskInfo;
  ``GET /api/v1/tasks/{uuid}`` until ``state`` is FINISHED (ERROR/CANCELED/ROLLBACK end it badly);
- ``GET /api/v1/servers/{serverId}/imageflavours`` → the installable images; ``POST /api/v1/servers/{serverId}/image``
  ``{imageFlavourId, hostname, sshKeyIds, …}`` (ServerImageSetup) → 202 + TaskInfo: the disk is wiped and the image
  installed (a pool server's way back into the pool); ``GET /api/v1/tasks`` lists the user's tasks;
- errors are ``{"code": "...", "message": "..."}`` (ResponseError / NotFoundError).

Netcup servers are bought on 12-month contracts in the customer control panel, not created by API: Netcup is a
``ServerProvider`` and not a ``ServerAllocator``; the Hub's pool inventory is where Netcup servers are handed out.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import httpx

from letsbe_contracts import Provider
from letsbe_hub.providers.base import Heartbeat, ServerState, ServerStatus, SnapshotResult
from letsbe_hub.providers.errors import (
    ProviderActionFailed,
    ProviderAuthError,
    ProviderNotFound,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from letsbe_hub.providers.http import ProviderHTTP, RetryPolicy, numeric_id, parse_time
from letsbe_platform import tls
from letsbe_platform.logging import get_logger
from letsbe_platform.waiting import Backoff, poll_until

log = get_logger(__name__)

NAME = Provider.NETCUP.value
_id = partial(numeric_id, NAME, "Netcup SCP")

_STATES = {
    "RUNNING": ServerState.RUNNING,
    "DISK_SNAPSHOT": ServerState.RUNNING,
    "SHUTOFF": ServerState.STOPPED,
    "SHUTDOWN": ServerState.STOPPED,
    "PAUSED": ServerState.STOPPED,
    "PMSUSPENDED": ServerState.STOPPED,
    "BLOCKED": ServerState.ERROR,
    "CRASHED": ServerState.ERROR,
}
_TASK_FAILED = {"ERROR", "CANCELED", "ROLLBACK", "WAITING_FOR_CANCEL"}


def parse_error(status: int, body: Any) -> tuple[str | None, str]:
    if isinstance(body, dict):
        return (str(body["code"]) if body.get("code") else None, str(body.get("message") or f"HTTP {status}")[:500])
    return None, f"HTTP {status}"


@dataclass(frozen=True)
class NetcupConfig:
    api_url: str  # …/scp-core
    token_url: str  # …/realms/scp/protocol/openid-connect/token
    refresh_token: str
    client_id: str = "scp"
    timeout: float = 15.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    poll_first: float = 1.0  # tasks are polled from this first wait, doubling up to poll_interval
    poll_interval: float = 2.0
    task_timeout: float = 1800.0

    @property
    def poll(self) -> Backoff:
        return Backoff(self.poll_first, self.poll_interval)


class _AccessTokens:
    """Trades the offline refresh token for short-lived access tokens; one refresh at a time, shared by callers."""

    def __init__(self, config: NetcupConfig):
        self.config = config
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(config.timeout), verify=tls.client_context())
        self._lock = asyncio.Lock()
        self._access: str | None = None
        self._expires_at = 0.0

    async def get(self, force: bool) -> str:
        async with self._lock:
            if force or self._access is None or time.monotonic() > self._expires_at - 30:
                await self._refresh()
            assert self._access is not None
            return self._access

    async def _refresh(self) -> None:
        form = {
            "client_id": self.config.client_id,
            "grant_type": "refresh_token",
            "refresh_token": self.config.refresh_token,
        }
        try:
            resp = await self._client.post(self.config.token_url, data=form)
        except httpx.TransportError as exc:
            raise ProviderUnavailable(NAME, f"token endpoint: {type(exc).__name__}") from exc
        if resp.status_code >= 500:
            raise ProviderUnavailable(NAME, f"token endpoint answered {resp.status_code}", status=resp.status_code)
        if not resp.is_success:
            # Keycloak's OAuth error body: {"error": "invalid_grant", "error_description": "..."}
            try:
                err = resp.json()
            except ValueError:
                err = {}
            reason = f"{err.get('error', resp.status_code)} {err.get('error_description', '')}".strip()
            raise ProviderAuthError(
                NAME,
                f"refresh token rejected: {reason}",
                status=resp.status_code,
                code=err.get("error"),
            )
        body = resp.json()
        self._access = body["access_token"]
        self._expires_at = time.monotonic() + float(body.get("expires_in", 300))

    async def aclose(self) -> None:
        await self._client.aclose()


class NetcupProvider:
    name = Provider.NETCUP

    def __init__(self, config: NetcupConfig):
        self.config = config
        self._tokens = _AccessTokens(config)
        self.http = ProviderHTTP(
            NAME,
            config.api_url,
            token=self._tokens.get,
            error_parser=parse_error,
            timeout=config.timeout,
            retry=config.retry,
        )

    async def aclose(self) -> None:
        await self.http.aclose()
        await self._tokens.aclose()

    async def __aenter__(self) -> NetcupProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def get_server_status(self, server_id: str) -> ServerStatus:
        server = (
            await self.http.request("GET", f"/api/v1/servers/{_id(server_id)}", params={"loadServerLiveInfo": "true"})
        ).json()
        live = server.get("serverLiveInfo") or {}
        raw = str(live.get("state") or "NOSTATE")
        return ServerStatus(
            provider=self.name,
            provider_ref=str(server.get("id", server_id)),
            state=_STATES.get(raw, ServerState.UNKNOWN),
            provider_state=raw,
            ipv4=tuple(a["ip"] for a in server.get("ipv4Addresses") or () if a.get("ip")),
        )

    async def create_snapshot(self, server_id: str, *, name: str) -> SnapshotResult:
        sid = _id(server_id)
        task = (
            await self.http.request(
                "POST",
                f"/api/v1/servers/{sid}/snapshots",
                json={"name": name, "description": "LetsBe", "onlineSnapshot": True},
            )
        ).json()
        await self.wait_task(task["uuid"])
        snap = (await self.http.request("GET", f"/api/v1/servers/{sid}/snapshots/{name}")).json()
        return SnapshotResult(
            provider=self.name,
            provider_ref=str(sid),
            snapshot_ref=str(snap.get("uuid") or name),
            name=snap.get("name", name),
            created_at=parse_time(snap.get("creationTime")),
        )

    async def list_snapshots(self, server_id: str) -> list[SnapshotResult]:
        sid = _id(server_id)
        snaps = (await self.http.request("GET", f"/api/v1/servers/{sid}/snapshots")).json()
        found = [
            SnapshotResult(
                provider=self.name,
                provider_ref=str(sid),
                snapshot_ref=str(s.get("uuid") or s["name"]),
                name=s["name"],
                created_at=parse_time(s.get("creationTime")),
            )
            for s in snaps
        ]
        return sorted(found, key=lambda s: (s.created_at.timestamp() if s.created_at else 0.0, s.name))

    async def delete_snapshot(self, snapshot: SnapshotResult) -> None:
        """SCP names snapshots per server: the name is the handle."""
        sid = _id(snapshot.provider_ref)
        try:
            task = (await self.http.request("DELETE", f"/api/v1/servers/{sid}/snapshots/{snapshot.name}")).json()
        except ProviderNotFound:
            return
        await self.wait_task(task["uuid"])
        log.info("netcup snapshot deleted", server_id=str(sid), name=snapshot.name)

    async def wait_task(self, uuid: str, *, heartbeat: Heartbeat | None = None) -> dict[str, Any]:
        result: dict[str, Any] = {}

        async def finished() -> bool:
            task = (await self.http.request("GET", f"/api/v1/tasks/{uuid}")).json()
            state = task.get("state")
            if state in _TASK_FAILED:
                err = task.get("responseError") or {}
                why = err.get("message") or task.get("message")
                raise ProviderActionFailed(
                    NAME, f"task {uuid} ({task.get('name')}) ended {state}: {why}", code=err.get("code")
                )
            result.update(task)
            return state == "FINISHED"

        if not await poll_until(
            finished, timeout=self.config.task_timeout, backoff=self.config.poll, heartbeat=heartbeat
        ):
            raise ProviderTimeout(NAME, f"task {uuid} not finished after {self.config.task_timeout}s")
        return result

    # --- wipe and reinstall (a pool server back from a tenant) --------------------------------------------------------

    async def image_flavour_id(self, server_id: str, image: str) -> int:
        """The id of the image flavour whose alias, name or image name is ``image`` (e.g. "Debian 12")."""
        flavours = (await self.http.request("GET", f"/api/v1/servers/{_id(server_id)}/imageflavours")).json()
        for f in flavours:
            names = {f.get("alias"), f.get("name"), (f.get("image") or {}).get("name")}
            if image in names:
                return int(f["id"])
        offered = ", ".join(str(f.get("alias") or f.get("name")) for f in flavours)
        raise ProviderRejected(NAME, f"no image flavour {image!r} for server {server_id} (offered: {offered})")

    async def start_reinstall(self, server_id: str, *, image: str, hostname: str | None, ssh_key_ids: list[int]) -> str:
        """Wipe the server's disk and install ``image`` with our SSH keys; returns the task's uuid (not waited for)."""
        sid = _id(server_id)
        body: dict[str, Any] = {
            "imageFlavourId": await self.image_flavour_id(server_id, image),
            "rootPartitionFullDiskSize": True,
            "sshKeyIds": ssh_key_ids,
            "emailToExecutingUser": False,
        }
        if hostname:
            body["hostname"] = hostname
        task = (await self.http.request("POST", f"/api/v1/servers/{sid}/image", json=body)).json()
        log.info("netcup reinstall started", server_id=str(sid), task=task["uuid"], image=image)
        return str(task["uuid"])

    async def reinstall_task_since(self, server_id: str, since: datetime) -> str | None:
        """The uuid of an image install on this server started at or after ``since`` and not failed (one we may
        have started before a crash), so a resumed job never installs twice."""
        sid = _id(server_id)
        for task in (await self.http.request("GET", "/api/v1/tasks")).json():
            started = parse_time(task.get("startedAt"))
            if (
                task.get("serverId") == sid
                and task.get("name") == "Install image"
                and task.get("state") not in _TASK_FAILED  # a failed install is tried again, not waited for
                and started is not None
                and started >= since.replace(microsecond=0)
            ):
                return str(task["uuid"])
        return None

