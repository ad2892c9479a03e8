"""OpenAI-compatible pass-through: ``POST /v1/chat/completions`` and ``POST /v1/responses`` (streaming or not)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from letsbe_agent.usage import UsageLedger
from letsbe_platform.tls import client_context
from letsbe_secrets_proxy.config import SecretsProxySettings
from letsbe_secrets_proxy.proxy.budget import ByteBudget
from letsbe_secrets_proxy.proxy.errors import BadSentinel, NotConfigured
from letsbe_secrets_proxy.proxy.registry import Registry
from letsbe_secrets_proxy.proxy.service import ProxyService
from letsbe_secrets_proxy.proxy.upstream import UpstreamClient
from letsbe_secrets_proxy.proxy.upstream_key import current_key
from letsbe_secrets_proxy.proxy.usage import UsageRecorder


def build_proxy(settings: SecretsProxySettings, client: UpstreamClient, usage: UsageRecorder | None = None,
                ) -> ProxyService:
    upstream_host = urlsplit(settings.upstream_base_url).hostname or ""
    key_host = settings.upstream_key_host or upstream_host
    if key_host != upstream_host:
        raise ValueError(f"the upstream key is bound to {key_host!r} but the upstream is {upstream_host!r}")
    rendered = settings.upstream_api_key.get_secret_value() if settings.upstream_api_key is not None else None
    api_key = current_key(settings.state_dir, rendered) if settings.hub_url else rendered
    own = {}
    if rendered is not None:
        own["upstream_api_key_rendered"] = rendered
    if api_key is not None:
        own["upstream_api_key"] = api_key
    if settings.sentinel_key is not None:
        own["agent_sentinel_key"] = settings.sentinel_key.get_secret_value()
    registry = Registry(
        settings.secrets_path if settings.secrets_key is not None else None,
        settings.secrets_key.get_secret_value() if settings.secrets_key is not None else None,
        own, settings.redaction_policy,
    )
    return ProxyService(
        client, settings.upstream_base_url,
        api_key, key_host, registry, usage or UsageRecorder(None), settings.max_request_bytes,
        settings.max_response_bytes, ByteBudget(settings.body_budget_bytes),
    )


@asynccontextmanager
async def proxy_lifespan(app: Starlette) -> AsyncIterator[None]:
    """Runs inside the app's lifespan (app.py), so settings are already there."""
    settings = app.state.settings
    ledger = UsageLedger(settings.usage_ledger_path) if settings.usage_ledger_path else None
    recorder = UsageRecorder(ledger)
    flusher = asyncio.create_task(recorder.run(), name="usage-recorder")
    client = UpstreamClient(timeout=settings.upstream_timeout_seconds, connect_timeout=10, max_connections=100,
                            max_idle=20, ssl_context=client_context())
    app.state.proxy = build_proxy(settings, client, recorder)
    try:
        yield
    finally:
        await client.aclose()
        recorder.stop()
        await flusher  # the last batch is written before the ledger closes
        if ledger is not None:
            ledger.close()


def _proxy(request: Request) -> ProxyService:
    proxy: ProxyService | None = getattr(request.app.state, "proxy", None)
    if proxy is None:
        raise NotConfigured("The proxy is starting.")
    return proxy


def _agent(request: Request) -> None:
    """The caller must present this tenant's sentinel key as ``Authorization: Bearer <key>``."""
    sentinel = request.app.state.settings.sentinel_key
    if sentinel is None:
        raise NotConfigured("No sentinel key is configured (LETSBE_SP_SENTINEL_KEY): every call is refused.")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    if not hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(),
                               hashlib.sha256(sentinel.get_secret_value().encode()).digest()):
        raise BadSentinel("Unknown API key: use the key this tenant's proxy gave the agent.")


LLM_PATHS = ("/v1/chat/completions", "/v1/responses")
# The body is read raw (any OpenAI request), so these are not derived from a declared body (openapi.py).
LLM_PROBLEMS = (400, 413, 502)


async def chat_completions(request: Request) -> Response:
    """OpenAI Chat Completions, redacted on the way out and on the way back."""
    _agent(request)
    return await _proxy(request).forward("chat", "/chat/completions", request)


async def responses(request: Request) -> Response:
    """OpenAI Responses, redacted on the way out and on the way back."""
    _agent(request)
    return await _proxy(request).forward("responses", "/responses", request)


ROUTES = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"], name="chat_completions"),
    Route("/v1/responses", responses, methods=["POST"], name="responses"),
]
