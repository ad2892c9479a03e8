"""Domain errors carry their HTTP status; one handler renders them as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://docs.letsbe.biz/problems/"
RESERVED = frozenset({"type", "title", "status", "detail", "instance"})


class DomainError(Exception):
    status_code: int = 400
    type: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any):
        clash = RESERVED & extra.keys()
        if clash:  # RFC 9457 members mean one thing: "status" is the HTTP status, never an object's state
            raise ValueError(f"problem extension members may not reuse {sorted(clash)}")
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.type,
            "title": self.title,
            "status": self.status_code,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class NotFound(DomainError):
    status_code, type, title = 404, "not-found", "Not found"


class Conflict(DomainError):
    status_code, type, title = 409, "conflict", "Conflict"


class Unauthorized(DomainError):
    status_code, type, title = 401, "unauthorized", "Authentication required"


class Forbidden(DomainError):
    status_code, type, title = 403, "forbidden", "Not allowed"


class Unprocessable(DomainError):
    """A well-formed payload that names something that does not exist (e.g. an unknown tool)."""

    status_code, type, title = 422, "unprocessable", "Unprocessable content"


class TooManyRequests(DomainError):
    status_code, type, title = 429, "too-many-requests", "Too many requests"


class ServiceUnavailable(DomainError):
    status_code, type, title = 503, "unavailable", "Service unavailable"
