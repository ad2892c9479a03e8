"""The FastAPI-free half of the services' web layer: runtime resources, problem+json errors, health, size limits,
request ids and metrics, as plain Starlette/ASGI pieces.

The Secrets Proxy serves its few routes with these on plain Starlette (``create_agent_app``): FastAPI and the
pydantic machinery its routing loads cost about 8 MB resident, an eighth of the proxy's 64 MB container. Every
other service builds on ``letsbe_platform.web.create_service_app``, which adds FastAPI on top of the same pieces.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bound_contextvars

from letsbe_platform.errors import PROBLEM_BASE, PROBLEM_JSON, DomainError
from letsbe_platform.logging import configure_logging, get_logger
from letsbe_platform.metrics import DB_POOL_CHECKED_OUT, DB_POOL_SIZE, HTTP_REQUEST_SECONDS

if TYPE_CHECKING:  # only annotations: ServiceConfig is a pydantic model, which the tenant agents do without
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from letsbe_contracts import Event
    from letsbe_platform.bus import Bus, Consumer, Handler
    from letsbe_platform.service_config import ServiceConfig
    from letsbe_platform.workers import Job, Periodic

log = get_logger(__name__)


T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Slot(Generic[T]):
    """Where one context keeps its own part of a :class:`Runtime` (its workers' handles, for its endpoints to find):
    ``ORDERS: Slot[OrdersRuntime] = Slot("orders")``, then ``rt.attach(ORDERS, part)`` and ``rt.part(ORDERS)``."""

    name: str


class Runtime:
    """Process-wide resources of a service, built in lifespan (never at import) and closed in reverse order."""

    def __init__(self, settings: ServiceConfig):
        self.settings = settings
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._bus: Bus | None = None
        self._tasks: list[tuple[str, asyncio.Task[None], Callable[[], None] | None]] = []
        self._consumers: list[Consumer] = []
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._parts: dict[Slot[Any], Any] = {}
        self.stopping = asyncio.Event()

    # What :func:`runtime` connected: a service asks for its database and bus without checking, and one started
    # without them (``runtime(database=False)``, ``bus=False``) fails at the first use, naming what is missing.

    @property
    def has_database(self) -> bool:
        return self._engine is not None

    @property
    def has_bus(self) -> bool:
        return self._bus is not None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError(f"{self.settings.service_name} runs without a database")
        return self._engine

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._sessions is None:
            raise RuntimeError(f"{self.settings.service_name} runs without a database")
        return self._sessions

    @property
    def database_url(self) -> str:
        if self._engine is None or not self.settings.database_url:
            raise RuntimeError(f"{self.settings.service_name} runs without a database")
        return self.settings.database_url

    @property
    def bus(self) -> Bus:
        if self._bus is None:
            raise RuntimeError(f"{self.settings.service_name} runs without NATS")
        return self._bus

    def attach(self, slot: Slot[T], part: T) -> T:
        """Keep ``part`` in ``slot`` for the life of this runtime."""
        self._parts[slot] = part
        return part

    def part(self, slot: Slot[T]) -> T | None:
        """What ``slot`` holds; None in a process that did not start that context (an app built for one context's
        tests, a replica without that worker)."""
        return self._parts.get(slot)

    def start(self, name: str, coro: Awaitable[None], stop: Callable[[], None] | None = None) -> None:
        """Run a background worker (consumer, relay, sweep). ``stop`` asks it to finish its current work and return."""
        task = asyncio.create_task(_supervised(name, coro), name=name)
        self._tasks.append((name, task, stop))

    def close_last(self, aclose: Callable[[], Awaitable[None]]) -> None:
        """Close a client the workers share (Stripe's, a provider's) at shutdown once every worker has stopped: a
        worker finishing its round must not have the client closed under it (its calls would fail and retry)."""
        self._closers.append(aclose)

    def consume(self, durable: str, event: type[Event], handler: Handler, **options: Any) -> Consumer:
        """Run the durable consumer ``durable`` of ``event`` (options as :meth:`letsbe_platform.bus.Bus.consumer`)."""
        consumer = self.bus.consumer(durable, event, handler, **options)
        self.start(durable, consumer.run(), consumer.stop)
        self._consumers.append(consumer)
        return consumer

    def relay_outbox(self, schema: str, *, poll_seconds: float = 1.0) -> None:
        """Publish ``schema``'s outbox to NATS (a :class:`letsbe_platform.outbox.OutboxRelay`): every service that
        adds events runs one."""
        from letsbe_platform.outbox import OutboxRelay

        relay = OutboxRelay(self.database_url, schema, self.bus, poll_seconds=poll_seconds)
        self.start("outbox-relay", relay.run(), relay.stop)

    def every(self, name: str, seconds: float, job: Job, *, leased: bool = False) -> Periodic:
        """Run ``job`` every ``seconds`` (a :class:`letsbe_platform.workers.Periodic`); ``leased``: in exactly one
        replica at a time, by a Postgres lease named ``name``."""
        from letsbe_platform.workers import Lease, Periodic

        lease = Lease(self.database_url, name) if leased else None
        worker = Periodic(name, job, seconds, lease=lease)
        self.start(name, worker.run(), worker.stop)
        return worker

    async def ready(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        if self._engine is not None:
            from sqlalchemy import text

            try:
                async with self._engine.connect() as conn:
                    await asyncio.wait_for(conn.execute(text("SELECT 1")), timeout=2)
                checks["postgres"] = "ok"
            except Exception as exc:
                checks["postgres"] = f"error: {type(exc).__name__}"
        if self._bus is not None:
            checks["nats"] = "ok" if self._bus.nc.is_connected else "error: disconnected"
        for name, task, _ in self._tasks:
            if task.done():
                checks[name] = "error: stopped"
        for consumer in self._consumers:  # alive but JetStream has not answered it yet: it takes no events
            if not consumer.subscribed and checks.get(consumer.durable) is None:
                checks[consumer.durable] = "error: not subscribed yet"
        return checks

    async def aclose(self) -> None:
        self.stopping.set()
        for _, _, stop in self._tasks:
            if stop is not None:
                stop()
        grace = self.settings.shutdown_grace_seconds
        pending = [t for _, t, _ in self._tasks if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for t in still:
                t.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        for aclose in reversed(self._closers):
            try:
                await aclose()
            except Exception:
                log.exception("closing a client failed")
        if self._bus is not None:
            await self._bus.close()
        if self._engine is not None:
            await self._engine.dispose()


async def _supervised(name: str, coro: Awaitable[None]) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background task crashed", task=name)
        raise


@asynccontextmanager
async def runtime(settings: ServiceConfig, *, database: bool = True, bus: bool = True) -> AsyncIterator[Runtime]:
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    rt = Runtime(settings)
    try:
        if database:
            if not settings.database_url:
                raise RuntimeError("DATABASE_URL is not set")
            from letsbe_platform.db import make_engine, make_session_factory

            rt._engine = make_engine(settings.database_url, application_name=settings.service_name)
            rt._sessions = make_session_factory(rt._engine)
        if bus:
            if not settings.nats_url:
                raise RuntimeError("NATS_URL is not set")
            from letsbe_platform.bus import Bus

            rt._bus = await Bus.connect(
                settings.nats_url,
                namespace=settings.bus_namespace,
                name=settings.service_name,
                replicas=settings.bus_replicas,
            )
        if settings.sandbox:
            log.warning("SANDBOX MODE: providers are loopback fakes; nothing here is real", port=settings.port)
        log.info("started", port=settings.port)
        yield rt
    finally:
        await rt.aclose()
        log.info("stopped")


# --- errors ----------------------------------------------------------------------------------------------------


def problem_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    if exc.status_code in (429, 503) and isinstance(exc.extra.get("retry_after_seconds"), int):
        headers = {"Retry-After": str(exc.extra["retry_after_seconds"])}
    return problem_response(exc.status_code, exc.problem(request.url.path), headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    body = {
        "type": "about:blank",
        "title": str(exc.detail) if exc.detail else "HTTP error",
        "status": exc.status_code,
        "detail": str(exc.detail),
        "instance": request.url.path,
    }
    return problem_response(exc.status_code, body, dict(exc.headers) if exc.headers else None)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # A service with a database or a bus has loaded the outage rules (add_input_guards); a tenant agent has neither.
    outages = sys.modules.get("letsbe_platform.outages")
    if outages is not None and (answer := outages.dependency_problem(request, exc)) is not None:
        return answer
    log.exception("unhandled error", path=request.url.path)
    body = {"type": "about:blank", "title": "Internal Server Error", "status": 500, "instance": request.url.path}
    return problem_response(500, body)


# --- request size ------------------------------------------------------------------------------------------------

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"The request body is limited to {limit} bytes.")
        self.limit = limit


def _too_large_body(path: str, limit: int) -> dict[str, Any]:
    return {
        "type": PROBLEM_BASE + "too-large",
        "title": "Request body too large",
        "status": 413,
        "detail": f"The request body is limited to {limit} bytes.",
        "instance": path,
    }


async def _body_too_large(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyTooLarge)
    return problem_response(413, _too_large_body(request.url.path, exc.limit))


class BodySizeLimitMiddleware:
    """Every request body is capped (413 problem+json): the service's ``max_body_bytes`` setting, or the larger
    limit a path declares in ``create_service_app(body_limits=...)`` (None: the route reads its body itself, bounded,
    so it can refuse and record it). A declared Content-Length over the limit is refused before anything is read; a
    chunked body is counted as it arrives."""

    def __init__(self, app: ASGIApp, per_path: Mapping[str, int | None] | None = None):
        self.app = app
        self.per_path = dict(per_path or {})

    def limit(self, scope: Scope) -> int | None:
        if scope["path"] in self.per_path:
            return self.per_path[scope["path"]]
        rt = getattr(getattr(scope.get("app"), "state", None), "runtime", None)
        return getattr(getattr(rt, "settings", None), "max_body_bytes", DEFAULT_MAX_BODY_BYTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_problem(send, 413, _too_large_body(scope["path"], limit))
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _send_problem(send, 413, _too_large_body(scope["path"], limit))


async def _send_problem(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


# --- metrics ---------------------------------------------------------------------------------------------------


SANDBOX_HEADER = "X-LetsBe-Sandbox"


class SandboxHeaderMiddleware:
    """Every response of a sandbox service says so, so no client mistakes it for the real thing."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt = getattr(getattr(scope.get("app"), "state", None), "runtime", None)
        if scope["type"] != "http" or rt is None or not rt.settings.sandbox:
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (SANDBOX_HEADER.lower().encode(), b"true")]
            await send(message)

        await self.app(scope, receive, send_wrapper)


REQUEST_ID_HEADER = "X-Request-ID"
# What a caller (or nginx's $request_id) may send as its request id; anything else is replaced by our own.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The caller's ``X-Request-ID`` when it is a plausible id, else a new one."""
    given = next((v for k, v in headers if k == b"x-request-id"), b"").decode("latin-1")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


class RequestIdMiddleware:
    """Every log line of a request carries its ``request_id``, and the response echoes it in ``X-Request-ID``
    (unless the route answered with an ``X-Request-ID`` of its own)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope["headers"])
        header = (REQUEST_ID_HEADER.lower().encode(), rid.encode())

        async def send_wrapper(message: Message) -> None:
            # A response that names its own request id keeps it (the secrets proxy passes the LLM provider's on).
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                if all(h[0] != header[0] for h in headers):
                    message["headers"] = [*headers, header]
            await send(message)

        with bound_contextvars(request_id=rid):
            await self.app(scope, receive, send_wrapper)


class MetricsMiddleware:
    """Request latency by route template (not raw path, so ids do not explode the label set)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            if template not in ("/metrics", "/healthz"):
                HTTP_REQUEST_SECONDS.labels(scope["method"], template, str(status["code"])).observe(
                    time.perf_counter() - started
                )


# --- health and metrics ------------------------------------------------------------------------------------------


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readiness(request: Request) -> JSONResponse:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:
        return problem_response(503, {"type": "about:blank", "title": "Starting", "status": 503})
    checks = await rt.ready()
    ok = all(v == "ok" for v in checks.values())
    if ok:
        return JSONResponse({"status": "ok", "checks": checks})
    body = {"type": "about:blank", "title": "Not ready", "status": 503, "checks": checks}
    return problem_response(503, body)


def metrics_text(request: Request) -> PlainTextResponse:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is not None and rt.has_database:
        pool = rt.engine.pool
        DB_POOL_CHECKED_OUT.set(getattr(pool, "checkedout", lambda: 0)())
        DB_POOL_SIZE.set(getattr(pool, "size", lambda: 0)())
    return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _metrics(request: Request) -> PlainTextResponse:
    return metrics_text(request)


# --- an agent's app without FastAPI ------------------------------------------------------------------------------


def create_agent_app(
    *,
    lifespan: Callable[[Starlette], Any],
    routes: Sequence[BaseRoute],
    openapi: Callable[[], dict[str, Any]],
    body_limits: Mapping[str, int | None] | None = None,
) -> Starlette:
    """What ``web.create_service_app(dependencies=False)`` builds, on plain Starlette: the same health, readiness,
    metrics, size limits, request ids, sandbox header and problem+json errors, for a tenant agent's few routes.

    ``openapi`` makes the service's document (a FastAPI description of the same routes, built on first use, so
    FastAPI is loaded only if someone asks for ``/openapi.json``); ``app.openapi()`` answers it as on FastAPI.
    """
    cache: list[dict[str, Any]] = []

    def document() -> dict[str, Any]:
        if not cache:
            cache.append(openapi())
        return cache[0]

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(document())

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"], name="healthz"),
            Route("/readyz", readiness, methods=["GET"], name="readyz"),
            Route("/metrics", _metrics, methods=["GET"], name="metrics"),
            Route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False),
            *routes,
        ],
        middleware=[  # outermost first, as create_service_app stacks them
            Middleware(RequestIdMiddleware),
            Middleware(BodySizeLimitMiddleware, per_path=body_limits),
            Middleware(MetricsMiddleware),
            Middleware(SandboxHeaderMiddleware),
        ],
        exception_handlers={
            DomainError: _domain_error,
            StarletteHTTPException: _http_error,
            BodyTooLarge: _body_too_large,
            Exception: _unhandled,
        },
        lifespan=lifespan,
    )
    app.openapi = document  # type: ignore[attr-defined]
    return app
