"""The provider abstraction of seed §6.3, in two parts: what every provider does (a server's status, its
snapshots), and what only a provider that creates servers by API does (Hetzner: allocate, deallocate). Netcup
servers are bought on contract and handed out from the Hub's pool inventory, so Netcup is only a ServerProvider."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol, runtime_checkable

from letsbe_contracts import Provider, Region, ServerNeeds, Tier

Heartbeat = Callable[[], Awaitable[None]]


class ServerState(StrEnum):
    """A provider's many power states, reduced to what the Hub acts on."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    DELETING = "deleting"
    ERROR = "error"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ServerAllocation:
    """A server a provider created (or found again) for us, running."""

    provider: Provider
    provider_ref: str
    name: str
    ipv4: IPv4Address
    ipv6: IPv6Address | None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerStatus:
    provider: Provider
    provider_ref: str
    state: ServerState
    provider_state: str  # the provider's own word for it, for operators
    ipv4: tuple[str, ...] = ()


@dataclass(frozen=True)
class SnapshotResult:
    provider: Provider
    provider_ref: str
    snapshot_ref: str
    name: str
    created_at: datetime | None = None
    ready: bool = True  # False while the provider is still writing it


@runtime_checkable
class ServerProvider(Protocol):
    """What the Hub asks of every provider about a server it already has."""

    name: Provider

    async def get_server_status(self, server_id: str) -> ServerStatus: ...

    async def create_snapshot(self, server_id: str, *, name: str) -> SnapshotResult: ...

    async def list_snapshots(self, server_id: str) -> list[SnapshotResult]:
        """The snapshots of this server we took (any state), oldest first; ``name`` is what we named them."""
        ...

    async def delete_snapshot(self, snapshot: SnapshotResult) -> None:
        """Delete one snapshot; one that is already gone is not an error."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ServerAllocator(ServerProvider, Protocol):
    """A provider that creates and deletes servers by API (overflow). The ``key`` of an allocation is its
    idempotency key: the same key finds the same server again, after a crash or a redelivery."""

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
        """Create a running server, idempotently. ``needs``: the cheapest configured type that has them."""
        ...

    async def deallocate_server(self, server_id: str) -> None:
        """Give the server back; a server that is already gone is not an error."""
        ...

    async def deallocate_key(self, key: str) -> bool:
        """Give back the server allocated under ``key`` if there is one (a failed or stale attempt); True if so."""
        ...
