"""One retrying HTTP client for every server provider.

Retries transport errors, 429 and 5xx with exponential backoff and full jitter; a ``Retry-After`` header (seconds or
an HTTP date) wins over the computed delay. Whatever still fails becomes a typed :mod:`errors` exception, so callers
never parse status codes. Tokens live in headers only and are never logged.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from prometheus_client import Counter, Histogram

from letsbe_hub.providers.errors import (
    ProviderAuthError,
    ProviderConflict,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from letsbe_platform import tls
from letsbe_platform.logging import get_logger
from letsbe_platform.metrics import LATENCY_BUCKETS
from letsbe_platform.waiting import Backoff, parse_retry_after

log = get_logger(__name__)

PROVIDER_CALL_SECONDS = Histogram(
    "provider_call_duration_seconds",
    "Latency of one HTTP call to a server provider (each retry counts as a call)",
    ["provider", "method", "outcome"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_RETRIES = Counter("provider_retries_total", "Provider calls retried, by reason", ["provider", "reason"])

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

# (status, parsed JSON body or None) -> (code, message) in the provider's own vocabulary
ErrorParser = Callable[[int, Any], tuple[str | None, str]]
# force_refresh -> bearer token
TokenSource = Callable[[bool], Awaitable[str]]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # tries in total, the first one included
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 120.0  # a provider asking for longer than this is treated as down

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return random.uniform(0, Backoff(self.backoff_base, self.backoff_max).nth(attempt))  # full jitter


class ProviderHTTP:
    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        token: TokenSource,
        error_parser: ErrorParser,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        self.provider = provider
        self.retry = retry or RetryPolicy()
        self._token = token
        self._parse_error = error_parser
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            verify=tls.client_context(),
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": "letsbe-hub", "Accept": "application/json", **(headers or {})},
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        content_type: str | None = None,
    ) -> httpx.Response:
        """A 2xx response, or a typed :class:`ProviderError` once retries are spent."""
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            token = await self._token(False)
            headers = {"Authorization": f"Bearer {token}"}
            if content_type:
                headers["Content-Type"] = content_type
            started = time.perf_counter()
            try:
                resp = await self.client.request(method, path, json=json, params=params, headers=headers)
            except httpx.TransportError as exc:
                PROVIDER_CALL_SECONDS.labels(self.provider, method, "transport-error").observe(
                    time.perf_counter() - started
                )
                if attempt >= self.retry.attempts:
                    raise ProviderUnavailable(self.provider, f"{method} {path}: {type(exc).__name__}") from exc
                await self._pause("transport", attempt, None, method, path)
                continue
            PROVIDER_CALL_SECONDS.labels(self.provider, method, f"{resp.status_code // 100}xx").observe(
                time.perf_counter() - started
            )
            if resp.is_success:
                return resp
            if resp.status_code == 401 and not refreshed:
                # An access token may expire between our check and the call: refresh once, not counted as a try.
                refreshed = True
                attempt -= 1
                await self._token(True)
                continue
            if resp.status_code in RETRY_STATUSES and attempt < self.retry.attempts:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                if retry_after is None or retry_after <= self.retry.max_retry_after:
                    await self._pause(str(resp.status_code), attempt, retry_after, method, path)
                    continue
            raise self.error_for(resp, method, path)

    async def _pause(self, reason: str, attempt: int, retry_after: float | None, method: str, path: str) -> None:
        delay = self.retry.delay(attempt, retry_after)
        PROVIDER_RETRIES.labels(self.provider, reason).inc()
        log.warning(
            "provider call failed; retrying",
            provider=self.provider,
            method=method,
            path=path,
            reason=reason,
            attempt=attempt,
            retry_in=round(delay, 3),
        )
        await asyncio.sleep(delay)

    def error_for(self, resp: httpx.Response, method: str, path: str) -> ProviderError:
        try:
            body = resp.json()
        except ValueError:
            body = None
        code, message = self._parse_error(resp.status_code, body)
        text = f"{method} {path} -> {resp.status_code}" + (f" {code}" if code else "") + f": {message}"
        status = resp.status_code
        kind: type[ProviderError]
        if status == 429:
            kind = ProviderRateLimited
        elif status >= 500:
            kind = ProviderUnavailable
        elif status == 404:
            kind = ProviderNotFound
        elif status == 409:
            kind = ProviderConflict
        elif status in (401, 403) and code not in {"resource_limit_exceeded", "protected", "locked"}:
            kind = ProviderAuthError
        else:
            kind = ProviderRejected
        return kind(self.provider, text[:1000], status=status, code=code)


def numeric_id(provider: str, label: str, server_id: str) -> int:
    """A provider's numeric server id (``label``: how the error names the provider), else ProviderRejected."""
    if not str(server_id).isdigit():
        raise ProviderRejected(provider, f"not a {label} server id: {server_id!r}")
    return int(server_id)


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 time from a provider ("Z" included); None when absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
