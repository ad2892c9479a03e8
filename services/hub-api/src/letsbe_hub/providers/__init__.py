"""Server providers behind two protocols (seed §6.3): every provider is a ServerProvider (Netcup SCP for the pool);
Hetzner Cloud, which creates overflow servers, is a ServerAllocator too."""

from letsbe_hub.providers.base import (
    ServerAllocation,
    ServerAllocator,
    ServerProvider,
    ServerState,
    ServerStatus,
    SnapshotResult,
)
from letsbe_hub.providers.errors import (
    ProviderActionFailed,
    ProviderAuthError,
    ProviderConflict,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)

__all__ = [
    "ProviderActionFailed",
    "ProviderAuthError",
    "ProviderConflict",
    "ProviderError",
    "ProviderNotFound",
    "ProviderRateLimited",
    "ProviderRejected",
    "ProviderTimeout",
    "ProviderUnavailable",
    "ServerAllocation",
    "ServerAllocator",
    "ServerProvider",
    "ServerState",
    "ServerStatus",
    "SnapshotResult",
]
