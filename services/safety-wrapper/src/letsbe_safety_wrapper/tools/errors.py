"""Why a tool call was refused, as problem+json (each with a stable ``type`` the agent can branch on)."""

from letsbe_platform.errors import Conflict, DomainError, Forbidden, NotFound, ServiceUnavailable, Unprocessable


class KillSwitchEngaged(DomainError):
    status_code, type, title = 423, "tools-kill-switch", "Tool execution is switched off"


class RateLimited(DomainError):
    status_code, type, title = 429, "tools-rate-limited", "Too many calls to this tool"


class LoopDetected(DomainError):
    status_code, type, title = 429, "tools-loop-detected", "The same call was repeated too often"


class UnknownSecret(Unprocessable):
    type, title = "tools-unknown-secret", "Unknown secret reference"


class SecretNotBound(Forbidden):
    type, title = "tools-secret-not-bound", "Secret not bound to this tool"


class ApprovalNotFound(NotFound):
    type, title = "tools-approval-not-found", "No such approval"


class ApprovalMismatch(Forbidden):
    type, title = "tools-approval-mismatch", "The approval was granted for a different call"


class ApprovalRejected(Forbidden):
    type, title = "tools-approval-rejected", "The approval was rejected"


class ApprovalExpired(Conflict):
    type, title = "tools-approval-expired", "The approval has expired"


class ApprovalUsed(Conflict):
    type, title = "tools-approval-used", "The approval was already used"


class NoExecutor(Unprocessable):
    type, title = "tools-no-executor", "This call cannot be executed"


class ToolUnavailable(DomainError):
    status_code, type, title = 502, "tools-unavailable", "The tool did not answer"


class HubUnavailable(ServiceUnavailable):
    type, title = "tools-hub-unavailable", "The hub could not be reached for the approval"


class NotConfigured(ServiceUnavailable):
    type, title = "tools-not-configured", "Tool execution is not configured on this tenant"


class SecretNotAllowed(Forbidden):
    type, title = "tools-secret-not-allowed", "SECRET_REF outside the argument slots declared for it"


class MalformedCall(Unprocessable):
    type, title = "tools-malformed-call", "The call is not well-formed"


class CallTooLarge(DomainError):
    status_code, type, title = 413, "tools-call-too-large", "The call is too large"
