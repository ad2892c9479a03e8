"""Problem+json errors of the proxy. Each also carries an OpenAI-style ``error`` member, so the agent's OpenAI
client shows a useful message instead of failing to parse the body."""

from typing import Any

from letsbe_platform.errors import DomainError, ServiceUnavailable, Unauthorized


class _OpenAICompatible(DomainError):
    code = "proxy_error"

    def __init__(self, detail: str | None = None, **extra: Any):
        super().__init__(detail, **extra)
        self.extra.setdefault("error", {"message": self.detail, "type": self.code, "code": self.code, "param": None})


class SecretBlocked(_OpenAICompatible):
    status_code, type, title, code = 400, "secrets-proxy-secret-blocked", "A secret was found in the request", \
        "secret_blocked"


class BadRequestBody(_OpenAICompatible):
    status_code, type, title, code = 400, "secrets-proxy-bad-body", "The request body is not a JSON object", \
        "invalid_request_error"


class BodyTooLarge(_OpenAICompatible):
    status_code, type, title, code = 413, "secrets-proxy-too-large", "The request body is too large", \
        "invalid_request_error"


class BadSentinel(Unauthorized):
    type, title = "secrets-proxy-unauthorized", "Unknown API key"

    def __init__(self, detail: str | None = None, **extra: Any):
        super().__init__(detail, **extra)
        self.extra.setdefault("error", {"message": self.detail, "type": "invalid_api_key", "code": "invalid_api_key",
                                        "param": None})


class UpstreamUnavailable(_OpenAICompatible):
    status_code, type, title, code = 502, "secrets-proxy-upstream", "The LLM provider could not be reached", \
        "upstream_unavailable"


class UpstreamTooLarge(_OpenAICompatible):
    status_code, type, title, code = 502, "secrets-proxy-upstream-too-large", \
        "The LLM provider's answer is too large to check", "upstream_too_large"


class NotConfigured(ServiceUnavailable):
    type, title = "secrets-proxy-not-configured", "The proxy is not configured"
