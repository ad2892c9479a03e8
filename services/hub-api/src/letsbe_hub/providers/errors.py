"""Typed provider errors: callers decide on the kind (retry later, fail the order, fix the config), not on strings."""

from __future__ import annotations


class ProviderError(Exception):
    """Something a server provider refused or could not do. ``retryable``: trying again later may succeed."""

    retryable: bool = False

    def __init__(self, provider: str, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message
        self.status = status
        self.code = code


class ProviderUnavailable(ProviderError):
    """5xx, timeouts, connection errors, maintenance: still failing after our retries."""

    retryable = True


class ProviderRateLimited(ProviderUnavailable):
    """429 after our retries (each honoured Retry-After)."""


class ProviderAuthError(ProviderError):
    """401/403: the token is wrong, expired or lacks permissions. An operator has to act."""


class ProviderNotFound(ProviderError):
    """404: the server, action or snapshot does not exist (any more)."""


class ProviderConflict(ProviderError):
    """409: e.g. a server with that name already exists (Hetzner ``uniqueness_error``)."""


class ProviderRejected(ProviderError):
    """Other 4xx: invalid input, resource limits, locked resources."""


class ProviderActionFailed(ProviderError):
    """An asynchronous action/task the provider accepted ended in error."""

    retryable = True


class ProviderTimeout(ProviderError):
    """We gave up waiting for an action, a state or SSH within the configured time."""

    retryable = True
