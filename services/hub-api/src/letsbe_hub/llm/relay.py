"""The OpenAI-compatible relay: a tenant's (already redacted) call goes on with the platform's key, and its usage is
counted against the tenant when the answer ends (the ``usage`` of a whole answer, of a chat stream's last chunk or
of a Responses stream's ``response.completed``)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from letsbe_platform.errors import ServiceUnavailable
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

# Request headers a client may send on (its Authorization, the tenant's relay key, never leaves the hub).
_FORWARD = ("content-type", "accept", "openai-beta", "openai-organization", "openai-project", "idempotency-key")
_PASS_BACK = ("content-type", "x-request-id", "openai-processing-ms", "retry-after")
_MAX_LINE = 1024 * 1024  # an SSE line longer than this is relayed but not inspected for usage

Meter = Callable[[uuid.UUID, str, int, int], Awaitable[None]]


def usage_of(doc: Any) -> tuple[str, int, int] | None:
    """(model, tokens in, tokens out) of a chat or Responses answer, chunk or event, if it carries usage."""
    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get("response"), dict):  # a Responses stream event (response.completed)
        doc = doc["response"]
    usage = doc.get("usage")
    if not isinstance(usage, dict):
        return None
    try:
        tokens_in = int(usage.get("prompt_tokens", usage.get("input_tokens")) or 0)
        tokens_out = int(usage.get("completion_tokens", usage.get("output_tokens")) or 0)
    except (TypeError, ValueError):
        return None
    return str(doc.get("model") or "unknown"), tokens_in, tokens_out


class UsageScanner:
    """Reads SSE lines as they pass and keeps the last usage seen."""

    def __init__(self) -> None:
        self._partial = b""
        self.found: tuple[str, int, int] | None = None

    def feed(self, chunk: bytes) -> None:
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        if len(self._partial) > _MAX_LINE:
            self._partial = b""
        for line in lines:
            if line.startswith(b"data:") and b'"usage"' in line:
                try:
                    found = usage_of(json.loads(line[5:]))
                except ValueError:
                    continue
                if found is not None:
                    self.found = found


class Relay:
    def __init__(self, client: httpx.AsyncClient, base_url: str, api_key: str | None, meter: Meter):
        self.client = client
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.meter = meter
        self._counting: set[asyncio.Task[None]] = set()

    async def drain(self) -> None:
        """Wait for the counts still being written (on shutdown)."""
        await asyncio.gather(*self._counting, return_exceptions=True)

    async def forward(self, tenant_id: uuid.UUID, path: str, request: Request) -> Response:
        if self._api_key is None:
            raise ServiceUnavailable("The LLM relay has no provider key (LETSBE_HUB_LLM_UPSTREAM_API_KEY).")
        body = await request.body()
        headers = {k: request.headers[k] for k in _FORWARD if k in request.headers}
        headers["authorization"] = f"Bearer {self._api_key}"
        upstream = self.client.build_request("POST", self.base_url + path, content=body, headers=headers)
        try:
            resp = await self.client.send(upstream, stream=True)
        except httpx.HTTPError as exc:
            log.warning("llm provider unreachable", tenant_id=str(tenant_id), error=type(exc).__name__)
            raise ServiceUnavailable(f"The LLM provider did not answer ({type(exc).__name__}).") from exc
        back = {k: v for k, v in resp.headers.items() if k in _PASS_BACK or k.startswith("x-ratelimit-")}
        if "text/event-stream" in resp.headers.get("content-type", ""):
            return StreamingResponse(self._stream(tenant_id, resp), status_code=resp.status_code, headers=back)
        try:
            raw = await resp.aread()
        finally:
            await resp.aclose()
        await self._count(tenant_id, resp.status_code, _parse(raw))
        return Response(raw, status_code=resp.status_code, headers=back)

    async def _stream(self, tenant_id: uuid.UUID, resp: httpx.Response) -> AsyncIterator[bytes]:
        scanner = UsageScanner()
        try:
            async for chunk in resp.aiter_bytes():
                scanner.feed(chunk)
                yield chunk
        finally:
            # Counted in a task of its own: a client that hangs up after the last event (the Secrets Proxy does,
            # once it has [DONE]) cancels this generator, and an await here would be cancelled with it.
            task = asyncio.create_task(self._count(tenant_id, resp.status_code, scanner.found))
            self._counting.add(task)
            task.add_done_callback(self._counting.discard)
            await resp.aclose()

    async def _count(self, tenant_id: uuid.UUID, status: int, found: tuple[str, int, int] | None) -> None:
        if status >= 400 and found is None:
            return  # refused upstream: nothing was spent
        model, tokens_in, tokens_out = found or ("unknown", 0, 0)
        try:
            await self.meter(tenant_id, model, tokens_in, tokens_out)
        except Exception:  # the answer has gone to the tenant already; losing a count must not break it
            log.exception("llm usage not recorded", tenant_id=str(tenant_id), model=model)


def _parse(raw: bytes) -> tuple[str, int, int] | None:
    try:
        return usage_of(json.loads(raw))
    except ValueError:
        return None
