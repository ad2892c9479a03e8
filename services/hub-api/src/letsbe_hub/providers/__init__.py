"""Server providers behind one protocol (seed §6.3): Hetzner Cloud for overflow, Netcup SCP for the pool."""

from letsbe_hub.providers.base import (
    ServerAllocation,
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
    ProviderUnsupported,
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
    "ProviderUnsupported",
    "ServerAllocation",
    "ServerProvider",
    "ServerState",
    "ServerStatus",
    "SnapshotResult",
]
