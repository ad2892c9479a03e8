"""Hetzner Cloud (overflow capacity, seed §6.2) over its public REST API (https://docs.hetzner.cloud).

Creation is idempotent by server name: Hetzner names are unique per project, so the Hub derives the name from the
order and, before creating, looks the name up. A create that hit a 5xx after Hetzner had already accepted it comes
back as ``uniqueness_error`` on retry, and is resolved the same way (look the name up).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Any

from letsbe_contracts import Provider, Region, ServerNeeds, Tier, load_catalog
from letsbe_hub.config import DEFAULT_SERVER_TYPES
from letsbe_hub.providers.base import Heartbeat, ServerAllocation, ServerState, ServerStatus, SnapshotResult
from letsbe_hub.providers.errors import (
    ProviderActionFailed,
    ProviderConflict,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
    ProviderTimeout,
)
from letsbe_hub.providers.http import ProviderHTTP, RetryPolicy, numeric_id, parse_time
from letsbe_platform.logging import get_logger
from letsbe_platform.waiting import Backoff, poll_until

log = get_logger(__name__)

NAME = Provider.HETZNER.value
_id = partial(numeric_id, NAME, "Hetzner")
# EU → Nuremberg (next to Netcup's EU site); US → Ashburn, VA (next to Netcup's Manassas site).
DEFAULT_LOCATIONS: Mapping[Region, str] = {Region.EU: "nbg1", Region.US: "ash"}

_STATES = {
    "running": ServerState.RUNNING,
    "initializing": ServerState.STARTING,
    "starting": ServerState.STARTING,
    "rebuilding": ServerState.STARTING,
    "migrating": ServerState.STARTING,
    "stopping": ServerState.STOPPED,
    "off": ServerState.STOPPED,
    "deleting": ServerState.DELETING,
}


def parse_error(status: int, body: Any) -> tuple[str | None, str]:
    """Hetzner's envelope: ``{"error": {"code": "...", "message": "...", "details": {...}}}``."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return (str(err.get("code")) if err.get("code") else None, str(err.get("message") or "")[:500])
    return None, f"HTTP {status}"


@dataclass(frozen=True)
class HetznerConfig:
    api_url: str
    token: str
    ssh_keys: tuple[str, ...] = ()
    image: str = "debian-12"
    user_data: str | None = None
    locations: Mapping[Region, str] = field(default_factory=lambda: dict(DEFAULT_LOCATIONS))
    server_types: tuple[str, ...] = DEFAULT_SERVER_TYPES
    timeout: float = 15.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Actions are polled as Hetzner's own clients do: from a short first wait, doubling up to poll_interval.
    poll_first: float = 1.0
    poll_interval: float = 1.0
    action_timeout: float = 600.0

    @property
    def poll(self) -> Backoff:
        return Backoff(self.poll_first, self.poll_interval)


class HetznerProvider:
    name = Provider.HETZNER

    def __init__(self, config: HetznerConfig):
        self.config = config
        token = config.token

        async def bearer(_force: bool) -> str:
            return token

        self.http = ProviderHTTP(
            NAME, config.api_url, token=bearer, error_parser=parse_error, timeout=config.timeout, retry=config.retry
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> HetznerProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- ServerAllocator ------------------------------------------------------------------------------------------

    async def allocate_server(
        self,
        tier: Tier,
        region: Region,
        *,
        key: str,
        labels: Mapping[str, str] | None = None,
        heartbeat: Heartbeat | None = None,
        needs: ServerNeeds | None = None,
    ) -> ServerAllocation:
        """``needs``: order the cheapest configured type that has them (else the tier's catalog type)."""
        server = await self.find_server(key)
        if server is None:
            if needs is not None:
                server_type = await self.cheapest_type(needs, region)
            else:
                server_type = load_catalog().tier(tier).hetzner_type
            try:
                created = await self._create(server_type, region, key, labels or {})
            except ProviderConflict as exc:
                if exc.code != "uniqueness_error":
                    raise
                server = await self.find_server(key)  # an earlier try of ours got through after all
                if server is None:
                    raise
                log.info("hetzner server existed already", name=key, server_id=server["id"])
            else:
                server = created["server"]
                log.info("hetzner server created", name=key, server_id=server["id"], type=server["server_type"]["name"])
                await self.wait_action(created["action"]["id"], heartbeat=heartbeat)
        server = await self._wait_running(int(server["id"]), heartbeat)
        return self._allocation(server)

    async def deallocate_server(self, server_id: str) -> None:
        try:
            body = (await self.http.request("DELETE", f"/servers/{_id(server_id)}")).json()
        except ProviderNotFound:
            return
        action = body.get("action") if isinstance(body, dict) else None
        if action:
            try:
                await self.wait_action(action["id"])
            except ProviderNotFound:
                pass
        log.info("hetzner server deleted", server_id=server_id)

    async def get_server_status(self, server_id: str) -> ServerStatus:
        server = (await self.http.request("GET", f"/servers/{_id(server_id)}")).json()["server"]
        ipv4 = (server.get("public_net") or {}).get("ipv4") or {}
        return ServerStatus(
            provider=self.name,
            provider_ref=str(server["id"]),
            state=_STATES.get(server.get("status", ""), ServerState.UNKNOWN),
            provider_state=str(server.get("status")),
            ipv4=(ipv4["ip"],) if ipv4.get("ip") else (),
        )

    async def create_snapshot(self, server_id: str, *, name: str) -> SnapshotResult:
        body = (
            await self.http.request(
                "POST",
                f"/servers/{_id(server_id)}/actions/create_image",
                json={"type": "snapshot", "description": name, "labels": {"managed-by": "letsbe"}},
            )
        ).json()
        await self.wait_action(body["action"]["id"])
        image = body["image"]
        return SnapshotResult(
            provider=self.name,
            provider_ref=str(server_id),
            snapshot_ref=str(image["id"]),
            name=name,
            created_at=parse_time(image.get("created")),
        )

    async def list_snapshots(self, server_id: str) -> list[SnapshotResult]:
        sid, found, page = _id(server_id), [], 1
        while page is not None:
            body = (
                await self.http.request(
                    "GET",
                    "/images",
                    params={"type": "snapshot", "label_selector": "managed-by=letsbe", "page": page, "per_page": 50},
                )
            ).json()
            for image in body["images"]:
                if (image.get("created_from") or {}).get("id") == sid:
                    found.append(
                        SnapshotResult(
                            provider=self.name,
                            provider_ref=str(sid),
                            snapshot_ref=str(image["id"]),
                            name=image.get("description") or "",
                            created_at=parse_time(image.get("created")),
                            ready=image.get("status") == "available",
                        )
                    )
            page = ((body.get("meta") or {}).get("pagination") or {}).get("next_page")
        return sorted(found, key=lambda s: int(s.snapshot_ref))

    async def delete_snapshot(self, snapshot: SnapshotResult) -> None:
        try:
            await self.http.request("DELETE", f"/images/{int(snapshot.snapshot_ref)}")
        except ProviderNotFound:
            return
        log.info("hetzner snapshot deleted", image_id=snapshot.snapshot_ref, name=snapshot.name)

    # --- Hetzner specifics ---------------------------------------------------------------------------------------

    async def cheapest_type(self, needs: ServerNeeds, region: Region) -> str:
        """The cheapest of the configured types, sold in the region's location, with the CPUs, RAM and disk the
        order needs (sizes and prices as ``GET /server_types`` reports them)."""
        location = self.config.locations[region]
        body = (await self.http.request("GET", "/server_types", params={"per_page": 50})).json()
        fitting: list[tuple[float, str]] = []
        for t in body["server_types"]:
            if t["name"] not in self.config.server_types or t.get("deprecated"):
                continue
            price = next((p for p in t["prices"] if p["location"] == location), None)
            if price is None:
                continue
            if t["cores"] >= needs.cpus and t["memory"] * 1024 >= needs.ram_mb and t["disk"] >= needs.disk_gb:
                fitting.append((float(price["price_hourly"]["net"]), t["name"]))
        if not fitting:
            raise ProviderRejected(
                NAME,
                f"no server type of {', '.join(self.config.server_types)} in {location} has {needs.cpus} CPUs, "
                f"{needs.ram_mb} MB RAM and {needs.disk_gb} GB disk",
            )
        return min(fitting)[1]

    async def find_server(self, name: str) -> dict[str, Any] | None:
        servers = (await self.http.request("GET", "/servers", params={"name": name})).json()["servers"]
        return servers[0] if servers else None

    async def deallocate_key(self, key: str) -> bool:
        """Delete the server allocated under ``key`` (its name) if there is one; True if one was deleted."""
        server = await self.find_server(key)
        if server is None:
            return False
        await self.deallocate_server(str(server["id"]))
        return True

    async def list_servers(
        self, label_selector: str | None = None, per_page: int = 50
    ) -> AsyncIterator[dict[str, Any]]:
        """Every server (matching ``label_selector``), following the pagination meta page by page."""
        page: int | None = 1
        while page is not None:
            params: dict[str, Any] = {"page": page, "per_page": per_page}
            if label_selector:
                params["label_selector"] = label_selector
            body = (await self.http.request("GET", "/servers", params=params)).json()
            for server in body["servers"]:
                yield server
            page = ((body.get("meta") or {}).get("pagination") or {}).get("next_page")

    async def wait_action(self, action_id: int, *, heartbeat: Heartbeat | None = None) -> dict[str, Any]:
        """Poll ``GET /actions/{id}`` until it succeeds; an action that ends in error raises ProviderActionFailed."""
        result: dict[str, Any] = {}

        async def done() -> bool:
            action = (await self.http.request("GET", f"/actions/{action_id}")).json()["action"]
            if action["status"] == "error":
                err = action.get("error") or {}
                raise ProviderActionFailed(
                    NAME,
                    f"action {action_id} ({action.get('command')}) failed: {err.get('message') or 'no reason given'}",
                    code=err.get("code"),
                )
            result.update(action)
            return action["status"] == "success"

        if not await poll_until(
            done, timeout=self.config.action_timeout, backoff=self.config.poll, heartbeat=heartbeat
        ):
            raise ProviderTimeout(NAME, f"action {action_id} still running after {self.config.action_timeout}s")
        return result

    async def _create(self, server_type: str, region: Region, name: str, labels: Mapping[str, str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "server_type": server_type,
            "image": self.config.image,
            "location": self.config.locations[region],
            "ssh_keys": list(self.config.ssh_keys),
            "labels": {"managed-by": "letsbe", **labels},
            "start_after_create": True,
            "public_net": {"enable_ipv4": True, "enable_ipv6": True},
        }
        if self.config.user_data:
            body["user_data"] = self.config.user_data
        return (await self.http.request("POST", "/servers", json=body)).json()

    async def _wait_running(self, server_id: int, heartbeat: Heartbeat | None) -> dict[str, Any]:
        latest: dict[str, Any] = {}

        async def running() -> bool:
            server = (await self.http.request("GET", f"/servers/{server_id}")).json()["server"]
            latest.update(server)
            if server["status"] == "off":  # we create with start_after_create: "off" means the start failed
                raise ProviderActionFailed(NAME, f"server {server_id} is off instead of starting")
            return server["status"] == "running"

        if not await poll_until(
            running, timeout=self.config.action_timeout, backoff=self.config.poll, heartbeat=heartbeat
        ):
            raise ProviderTimeout(NAME, f"server {server_id} not running after {self.config.action_timeout}s")
        return latest

    def _allocation(self, server: dict[str, Any]) -> ServerAllocation:
        net = server.get("public_net") or {}
        ipv4 = (net.get("ipv4") or {}).get("ip")
        if not ipv4:
            raise ProviderError(NAME, f"server {server['id']} has no public IPv4")
        ipv6_net = (net.get("ipv6") or {}).get("ip")
        # Hetzner hands out a /64; the server configures the first address of it.
        ipv6 = IPv6Network(ipv6_net, strict=False)[1] if ipv6_net else None
        return ServerAllocation(
            provider=self.name,
            provider_ref=str(server["id"]),
            name=server["name"],
            ipv4=IPv4Address(ipv4),
            ipv6=IPv6Address(ipv6) if ipv6 else None,
            labels=server.get("labels") or {},
        )
