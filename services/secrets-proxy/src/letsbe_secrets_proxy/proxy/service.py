"""Forward one OpenAI-compatible call: redact the request, attach the real key at egress, stream the answer back
through the rewriter, count the tokens.

The per-class policy (mask or block) applies to what leaves for the provider; what comes back is always masked
(refusing an answer already generated would only lose it).
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from letsbe_platform.logging import get_logger
from letsbe_secrets_proxy.proxy.body import object_flags
from letsbe_secrets_proxy.proxy.budget import ByteBudget
from letsbe_secrets_proxy.proxy.errors import (
    BadRequestBody,
    BodyTooLarge,
    SecretBlocked,
    UpstreamTooLarge,
    UpstreamUnavailable,
)
from letsbe_secrets_proxy.proxy.redact import Finding, Redactor
from letsbe_secrets_proxy.proxy.registry import Registry
from letsbe_secrets_proxy.proxy.stream import SSERewriter
from letsbe_secrets_proxy.proxy.upstream import UpstreamClient, UpstreamError, UpstreamResponse
from letsbe_secrets_proxy.proxy.usage import UsageRecorder
from letsbe_secrets_proxy.proxy.walk import drop_token_views, redact_in_place, redact_json

log = get_logger(__name__)

REDACTIONS = Counter("letsbe_sp_redactions_total", "Secrets masked or blocked", ["kind", "direction", "action"])
REDACT_SECONDS = Histogram("letsbe_sp_redact_seconds", "Time to redact a request body",
                           buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05))

# logprobs that are not null: they spell the answer token by token (see walk.drop_token_views)
_TOKEN_VIEWS = re.compile(rb'"(?:top_)?logprobs"\s*:\s*(?!null)')
# Response headers worth passing back; everything else (cookies, server, encodings) stays upstream.
_PASS_HEADERS = ("x-request-id", "openai-processing-ms", "retry-after")
_PASS_HEADER_PREFIXES = ("x-ratelimit-",)
# Request headers the agent may send on; its Authorization (the sentinel) is never forwarded.
_FORWARD_HEADERS = ("openai-beta", "openai-organization", "openai-project", "idempotency-key")


class ProxyService:
    def __init__(self, client: UpstreamClient, base_url: str, api_key: str | None, key_host: str,
                 registry: Registry, usage: UsageRecorder, max_body_bytes: int,
                 max_response_bytes: int | None = None, budget: ByteBudget | None = None):
        self.client = client
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.key_host = key_host
        self.registry = registry
        self.usage = usage
        self.max_body_bytes = max_body_bytes
        self.max_response_bytes = max_response_bytes or max_body_bytes
        self.budget = budget or ByteBudget(max(self.max_body_bytes, self.max_response_bytes))

    def use_key(self, api_key: str) -> None:
        """Switch to a new upstream key (a rotation); both it and the previous one stay on the redaction list."""
        if self._api_key:
            self.registry.add_own("upstream_api_key_previous", self._api_key)
        self.registry.add_own("upstream_api_key", api_key)
        self._api_key = api_key

    def _egress_headers(self, url: str, request: Request, redactor: Redactor,
                        findings: list[Finding]) -> dict[str, str]:
        headers = {"content-type": "application/json",
                   "accept": _header(redactor, request.headers.get("accept", "application/json"), findings)}
        for name in _FORWARD_HEADERS:
            if name in request.headers:
                headers[name] = _header(redactor, request.headers[name], findings)
        # The real key goes only to the host it is bound to (and the client never follows redirects).
        if self._api_key and urlsplit(url).hostname == self.key_host:
            headers["authorization"] = f"Bearer {self._api_key}"
        return headers

    async def forward(self, api: str, path: str, request: Request) -> Response:
        declared = _content_length(request)
        if declared is not None and declared > self.max_body_bytes:
            raise BodyTooLarge(f"The body is larger than {self.max_body_bytes} bytes.")
        # The request body and its redacted copies count against the budget until it has been sent.
        async with self.budget.hold(self.max_body_bytes if declared is None else declared):
            resp, streaming, strip_usage, redactor = await self._send(api, path, request)
        headers = _pass_headers(resp, redactor)
        if streaming and resp.status_code == 200 and "text/event-stream" in resp.headers.get("content-type", ""):
            rewriter = SSERewriter(redactor, api, self.usage.add, strip_usage=strip_usage)
            return StreamingResponse(self._relay(resp, rewriter), status_code=200,
                                     media_type="text/event-stream", headers={**headers, "cache-control": "no-cache"})
        try:
            declared = _content_length(resp)
            async with self.budget.hold(self.max_response_bytes if declared is None else declared):
                raw = await self._read_answer(resp, declared)
                return self._whole(api, resp, raw, headers)
        finally:
            await resp.aclose()

    async def _send(self, api: str, path: str, request: Request) -> tuple[UpstreamResponse, bool, bool, Redactor]:
        """Redact the request and send it; the upstream's answer comes back unread (streamed)."""
        data, flags = await self._read_json(request)
        redactor = self.registry.current()
        started = time.perf_counter()
        # Fast path: one scan of the body as it came (its decoded view undoes JSON's escapes, \\uXXXX included),
        # and what it finds masked where it stands (walk.redact_in_place); the rest of the bytes go out as they came.
        # A 1 MiB body is held once: only the two members needed here were parsed, and the scan decodes a piece at a
        # time. Parsed whole only when a secret cannot be masked in place.
        findings: list[Finding] = []
        body = clean = None
        content = redact_in_place(data, redactor, findings)
        if content is None:
            body = json.loads(data.decode("utf-8"))
            del data
            clean = redact_json(body, redactor, findings)
        else:
            del data
        url = self.base_url + path
        header_findings: list[Finding] = []
        egress_headers = self._egress_headers(url, request, redactor, header_findings)
        REDACT_SECONDS.observe(time.perf_counter() - started)
        findings = findings + header_findings
        _count(findings, "request")
        if any(f.action == "block" for f in header_findings):
            log.warning("request blocked: secret in a header")
            raise SecretBlocked("A request header carries secret material; the request was not sent.",
                                findings=[{"class": f.kind, "at": "headers"} for f in header_findings
                                          if f.action == "block"])
        if any(f.action == "block" for f in findings):
            where: list[str] = []  # a second pass that also records where (the rare path only pays for it)
            again: list[Finding] = []
            redact_json(body, redactor, again, [], where)
            blocked = [{"class": f.kind, "at": w} | ({"name": f.name} if f.name else {})
                       for f, w in zip(again, where, strict=True) if f.action == "block"]
            log.warning("request blocked: secret in request", classes=sorted({b["class"] for b in blocked}))
            raise SecretBlocked(
                "The request contains " + ", ".join(sorted({b["class"] for b in blocked}))
                + " material and was not sent. Remove it and retry; see 'findings' for where.",
                findings=blocked[:50],
            )
        if clean is not None:
            flags = (clean.get("stream"), clean.get("stream_options"))
        streaming = flags[0] is True
        strip_usage = False
        if streaming and api == "chat":
            # Ask for the final usage chunk: the only place a streamed chat answer says what it cost. A client
            # that did not ask for it does not get it (its loop reads choices[0] of every chunk).
            options = flags[1] if isinstance(flags[1], dict) else {}
            if options.get("include_usage") is not True:
                if clean is None:
                    clean = json.loads(content)  # the clean body as it came
                clean = {**clean, "stream_options": {**options, "include_usage": True}}
                content = None
                strip_usage = True
        del body
        if content is None:
            content = json.dumps(clean).encode()
        del clean
        # The body is let go of once the answer's headers are in (the answer lives on after the budget is released).
        try:
            return await self.client.post(url, egress_headers, content), streaming, strip_usage, redactor
        except UpstreamError as exc:
            raise UpstreamUnavailable(f"The LLM provider did not answer ({exc.reason}).") from exc

    async def _read_answer(self, resp: UpstreamResponse, declared: int | None) -> bytes:
        """A non-streamed answer is redacted whole: read it only up to the cap."""
        too_large = UpstreamTooLarge(f"The provider's answer is larger than {self.max_response_bytes} bytes; "
                                     "ask for a streamed answer (stream: true) instead.")
        if declared is not None and declared > self.max_response_bytes:
            raise too_large
        chunks, size = [], 0
        try:
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise too_large
                chunks.append(chunk)
        except UpstreamError as exc:
            raise UpstreamUnavailable(f"The LLM provider's answer broke off ({exc.reason}).") from exc
        return b"".join(chunks)

    async def _relay(self, resp: UpstreamResponse, rewriter: SSERewriter) -> AsyncIterator[bytes]:
        try:
            async for chunk in resp.aiter_bytes():
                out = rewriter.feed(chunk)
                if out:
                    yield out
                if rewriter.buffered() > self.max_response_bytes:
                    # Held back for redaction and still growing (an event without its end, a key without its
                    # END line): stop here rather than grow without bound or let unchecked text through.
                    log.warning("stream stopped: too much held back for redaction", held=rewriter.buffered())
                    yield _STREAM_TOO_LARGE
                    return
            tail = rewriter.close()
            if tail:
                yield tail
        finally:
            await resp.aclose()
            _count(rewriter.findings, "response")

    def _whole(self, api: str, resp: UpstreamResponse, raw: bytes, headers: dict[str, str]) -> Response:
        redactor = self.registry.current()
        findings: list[Finding] = []
        media_type = _header(redactor, resp.headers.get("content-type", "application/json"), findings)
        try:
            doc = json.loads(raw)
        except ValueError:
            text, findings = redactor.redact(raw.decode("utf-8", errors="replace"))
            _count(findings, "response")
            return Response(text, status_code=resp.status_code, headers=headers, media_type=media_type)
        if resp.status_code == 200 and isinstance(doc, dict) and isinstance(doc.get("usage"), dict):
            usage, model = doc["usage"], str(doc.get("model") or "")
            tokens = ("prompt_tokens", "completion_tokens") if api == "chat" else ("input_tokens", "output_tokens")
            self.usage.add(model, usage.get(tokens[0]), usage.get(tokens[1]))
        token_views = _TOKEN_VIEWS.search(raw) is not None
        if not token_views and not findings and not redactor.has_hits(raw.decode("utf-8", errors="replace")):
            return Response(raw, status_code=resp.status_code, headers=headers, media_type=media_type)
        clean = redact_json(drop_token_views(doc) if token_views else doc, redactor, findings)
        _count(findings, "response")
        return JSONResponse(clean, status_code=resp.status_code, headers=headers)

    async def _read_json(self, request: Request) -> tuple[bytes, tuple[Any, Any]]:
        """The body as it came, and its ``stream`` and ``stream_options`` members."""
        # A BytesIO hands its buffer over as the bytes object (no copy): the body is held once, plus at most an
        # eighth while it grows, where chunks joined at the end would be held twice.
        buffer, size = io.BytesIO(), 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge(f"The body is larger than {self.max_body_bytes} bytes.")
            buffer.write(chunk)
        raw = buffer.getvalue()
        del buffer
        members = object_flags(raw)
        if members is None:  # not plainly a JSON object: json.loads says what it is
            try:
                body = json.loads(raw.decode("utf-8"))
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError too
                raise BadRequestBody("The body is not valid UTF-8 JSON.") from exc
            if not isinstance(body, dict):
                raise BadRequestBody("The body must be a JSON object.")
            members = body
        return raw, (members.get("stream"), members.get("stream_options"))


_STREAM_TOO_LARGE = b"".join(
    f"{line}\n".encode() for line in (
        "event: error",
        'data: {"error": {"message": "The answer was stopped: it held back more text for redaction than the '
        'proxy allows.", "type": "proxy_error", "code": "stream_too_large", "param": null}}',
        "",
    )
)


def _content_length(message: Request | UpstreamResponse) -> int | None:
    value = message.headers.get("content-length")
    return int(value) if value and value.isdigit() else None


def _header(redactor: Redactor, value: str, findings: list[Finding]) -> str:
    masked, found = redactor.redact(value)
    findings.extend(found)
    return masked


def _pass_headers(resp: UpstreamResponse, redactor: Redactor) -> dict[str, str]:
    findings: list[Finding] = []
    out = {k: _header(redactor, v, findings) for k, v in resp.headers.items()
           if k.lower() in _PASS_HEADERS or k.lower().startswith(_PASS_HEADER_PREFIXES)}
    _count(findings, "response")
    return out


def _count(findings: list[Finding], direction: str) -> None:
    for f in findings:
        REDACTIONS.labels(f.kind, direction, f.action if direction == "request" else "mask").inc()
