"""Errors of the servers context; each renders as RFC 9457 problem+json with its status."""

from letsbe_platform.errors import Conflict, DomainError, NotFound, ServiceUnavailable, Unprocessable


class ServerNotFound(NotFound):
    type, title = "server-not-found", "No such server"


class HoldNotFound(NotFound):
    type, title = "hold-not-found", "No such held order"


class ServerConflict(Conflict):
    type, title = "server-conflict", "The server is not in a state that allows this"


class NoServerAvailable(Conflict):
    type, title = "no-server-available", "No AVAILABLE server in that pool"


class HostKeyUnreadable(Unprocessable):
    type, title = "host-key-unreadable", "Could not read the server's SSH host key"


class ProviderNotConfigured(ServiceUnavailable):
    type, title = "provider-not-configured", "The provider has no API credentials configured"


class ProviderCallFailed(DomainError):
    status_code, type, title = 502, "provider-error", "The provider refused or failed the request"
