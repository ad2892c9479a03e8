"""The pieces every service's FastAPI app shares: runtime resources, errors, health, metrics.

The database and the bus are imported only by a runtime that uses them: the tenant agents run with neither and
must not pay for SQLAlchemy or nats-py (their memory limit is 64 MB). The session dependency lives in ``db``
(``SessionDep`` is still importable from here, loaded on first use).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bound_contextvars

from letsbe_platform.errors import PROBLEM_BASE, PROBLEM_JSON, DomainError, Unprocessable
from letsbe_platform.logging import configure_logging, get_logger
from letsbe_platform.metrics import DB_POOL_CHECKED_OUT, DB_POOL_SIZE, HTTP_REQUEST_SECONDS
from letsbe_platform.settings import ServiceSettings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from letsbe_platform.bus import Bus

log = get_logger(__name__)


def __getattr__(name: str) -> Any:
    if name == "SessionDep":  # kept here for the services that import it from web
        from letsbe_platform.db import SessionDep

        return SessionDep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Runtime:
    """Process-wide resources of a service, built in lifespan (never at import) and closed in reverse order."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.engine: AsyncEngine | None = None
        self.sessions: async_sessionmaker[AsyncSession] | None = None
        self.bus: Bus | None = None
        self._tasks: list[tuple[str, asyncio.Task[None], Callable[[], None] | None]] = []
        self.stopping = asyncio.Event()

    def start(self, name: str, coro: Awaitable[None], stop: Callable[[], None] | None = None) -> None:
        """Run a background worker (consumer, relay, sweep). ``stop`` asks it to finish its current work and return."""
        task = asyncio.create_task(_supervised(name, coro), name=name)
        self._tasks.append((name, task, stop))

    async def ready(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        if self.engine is not None:
            from sqlalchemy import text

            try:
                async with self.engine.connect() as conn:
                    await asyncio.wait_for(conn.execute(text("SELECT 1")), timeout=2)
                checks["postgres"] = "ok"
            except Exception as exc:
                checks["postgres"] = f"error: {type(exc).__name__}"
        if self.bus is not None:
            checks["nats"] = "ok" if self.bus.nc.is_connected else "error: disconnected"
        for name, task, _ in self._tasks:
            if task.done():
                checks[name] = "error: stopped"
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
        if self.bus is not None:
            await self.bus.close()
        if self.engine is not None:
            await self.engine.dispose()


async def _supervised(name: str, coro: Awaitable[None]) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background task crashed", task=name)
        raise


@asynccontextmanager
async def runtime(settings: ServiceSettings, *, database: bool = True, bus: bool = True) -> AsyncIterator[Runtime]:
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    rt = Runtime(settings)
    try:
        if database:
            if not settings.database_url:
                raise RuntimeError("DATABASE_URL is not set")
            from letsbe_platform.db import make_engine, make_session_factory

            rt.engine = make_engine(settings.database_url, application_name=settings.service_name)
            rt.sessions = make_session_factory(rt.engine)
        if bus:
            if not settings.nats_url:
                raise RuntimeError("NATS_URL is not set")
            from letsbe_platform.bus import Bus

            rt.bus = await Bus.connect(
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


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


# --- errors ----------------------------------------------------------------------------------------------------


def problem_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return problem_response(exc.status_code, exc.problem(request.url.path), headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Location and message only: echoing the input could echo a secret back.
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
    body = {
        "type": PROBLEM_BASE + "validation",
        "title": "Invalid request",
        "status": 422,
        "detail": "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:10]),
        "instance": request.url.path,
        "errors": errors,
    }
    return problem_response(422, body)


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


# --- bounded integer parameters ----------------------------------------------------------------------------------

# Every integer a client sends has an upper bound, so none reaches Postgres as an out-of-range bigint. (Lists page
# by cursor, not offset: ``pagination``.)
MAX_EVENT_ID = 2**63 - 1
After = Annotated[int, Query(ge=0, le=MAX_EVENT_ID, description="Same as the Last-Event-ID header")]
LastEventId = Annotated[
    str | None, Header(alias="Last-Event-ID", max_length=19, description="The id of the last event received")
]


def sse_cursor(last_event_id: str | None, after: int | None) -> int:
    """Where a reconnecting SSE client resumes: its Last-Event-ID header, else ``?after=``, else the start."""
    if not last_event_id:
        return after or 0
    if not last_event_id.isdigit() or int(last_event_id) > MAX_EVENT_ID:
        raise Unprocessable("Last-Event-ID must be an id this stream sent.", param="Last-Event-ID")
    return int(last_event_id)


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


# --- the OpenAPI contract: who may call, and which problems an operation answers ------------------------------

# The two kinds of caller of the control plane, each its own security scheme in every OpenAPI document.
OPERATOR_TOKEN = HTTPBearer(
    scheme_name="operatorToken",
    auto_error=False,
    description="An operator API token (lbh_…). Each operation lists the scope the token needs; where it lists "
    "several, any one of them is enough.",
)
AGENT_CREDENTIAL = HTTPBearer(
    scheme_name="agentCredential", auto_error=False, description="A tenant agent's API key (lba_…)."
)

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details. Further members may carry machine-readable details.",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "description": "A URI naming the kind of problem"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "The request path"},
        "errors": {
            "type": "array",
            "description": "Validation problems (422): where and what",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}

# status → (what it means, an example: its type, title and detail)
PROBLEMS: dict[int, tuple[str, str, str, str]] = {
    400: (
        "A value is out of range or refused",
        "invalid-input",
        "Invalid input",
        "A value of this request is out of range or not valid text.",
    ),
    401: (
        "No credential, or an unknown or revoked one",
        "unauthorized",
        "Authentication required",
        "Send an API token as 'Authorization: Bearer <token>'.",
    ),
    403: (
        "The credential lacks the scope this operation needs",
        "forbidden",
        "Not allowed",
        "This token lacks the 'orders:write' scope.",
    ),
    404: ("Nothing with this id", "not-found", "Not found", "No such order."),
    409: (
        "The resource's state does not allow this now",
        "conflict",
        "Conflict",
        "The order is FULFILLED; it cannot be cancelled.",
    ),
    413: (
        "The request body is over the limit",
        "too-large",
        "Request body too large",
        "The request body is limited to 1048576 bytes.",
    ),
    422: (
        "The request does not match this operation's parameters or schema",
        "validation",
        "Invalid request",
        "body.domain: String should match pattern",
    ),
    423: ("Switched off by the operator", "locked", "Locked", "Tool execution is switched off."),
    429: ("Too many requests; slow down", "too-many-requests", "Too many requests", "Too many calls to this tool."),
    502: (
        "An upstream provider refused or failed",
        "provider-error",
        "The provider refused or failed the request",
        "The provider answered 500.",
    ),
    503: (
        "The service or one of its dependencies (Postgres, NATS, a provider) is unavailable; retry later",
        "unavailable",
        "Service unavailable",
        "Postgres is unreachable right now; try again shortly.",
    ),
    504: ("An upstream did not finish in time", "timeout", "Gateway timeout", "The record is not served yet."),
}
_STATE_CHANGING = frozenset({"post", "put", "patch", "delete"})
_ALWAYS_ANSWER = frozenset({"/healthz", "/metrics"})  # answered by the process alone


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=problems(502, 504)`` on a route: problems particular to it (the common ones are added for every
    route by :func:`create_service_app`)."""
    return {status: _problem_response(status) for status in statuses}


def _problem_response(status: int) -> dict[str, Any]:
    description, kind, title, detail = PROBLEMS[status]
    example = {"type": PROBLEM_BASE + kind, "title": title, "status": status, "detail": detail}
    content = {"schema": {"$ref": "#/components/schemas/Problem"}, "example": example}
    return {"description": description, "content": {PROBLEM_JSON: content}}


def _common_problems(operation: dict[str, Any], method: str, path: str, *, dependencies: bool) -> set[int]:
    """The problems any operation of this shape can answer, whatever its handler does."""
    parameters = operation.get("parameters", [])
    has_input = bool(parameters) or "requestBody" in operation
    security = operation.get("security", [])
    codes = set() if path in _ALWAYS_ANSWER else {503}
    if has_input:
        codes.add(422)
        if dependencies:
            codes.add(400)  # Postgres refused a value (outages.dependency_problem)
    if "requestBody" in operation:
        codes.add(413)
    if security:
        codes.add(401)
        if any(scopes for requirement in security for scopes in requirement.values()):
            codes.add(403)
    if any(p.get("in") == "path" for p in parameters):
        codes.add(404)
    if dependencies and security and method in _STATE_CHANGING:
        codes.add(409)
    return codes


def _contract_openapi(app: FastAPI, *, dependencies: bool) -> dict[str, Any]:
    """FastAPI's document plus, for every operation, its problem+json responses (one shared Problem schema)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    component_schemas = components.setdefault("schemas", {})
    component_schemas["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):  # replaced by Problem (422 is problem+json too)
        component_schemas.pop(name, None)
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            for status in _common_problems(operation, method, path, dependencies=dependencies):
                responses.setdefault(str(status), _problem_response(status))
            for status in responses:  # every error is problem+json, whatever a route declared
                if status.isdigit() and int(status) in PROBLEMS:
                    responses[status] = _problem_response(int(status))
    app.openapi_schema = schema
    return schema


def _operation_id(route: APIRoute) -> str:
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}-{route.name}"


# --- the factory -------------------------------------------------------------------------------------------------


def add_input_guards(app: FastAPI, *, dependencies: bool = True) -> None:
    """Handlers that keep bad input and outages out of the 500s: body too large and, for a service with Postgres or
    NATS (``dependencies``), those being down and values the database refuses."""
    app.add_exception_handler(BodyTooLarge, _body_too_large)
    if dependencies:
        from letsbe_platform import outages  # asyncpg, NATS and SQLAlchemy: never loaded by the tenant agents

        outages.install(app)


def create_service_app(
    *,
    title: str,
    version: str,
    lifespan: Callable[[FastAPI], Any],
    routers: Iterable[APIRouter] = (),
    description: str = "",
    middleware: Iterable[tuple[type, dict[str, Any]]] = (),
    body_limits: Mapping[str, int | None] | None = None,
    dependencies: bool = True,
) -> FastAPI:
    """An app with the shared health, readiness, metrics, size limits and problem+json behaviour.

    ``lifespan`` must set ``app.state.runtime`` (a :class:`Runtime`) before it yields. ``body_limits`` maps a path
    to another body limit than the service's ``max_body_bytes`` (only for routes that need one). ``dependencies``:
    False for a service without Postgres and NATS (the tenant agents).
    """
    app = FastAPI(
        title=title,
        version=version,
        description=description,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
    add_input_guards(app, dependencies=dependencies)
    for cls, options in middleware:
        app.add_middleware(cls, **options)
    app.add_middleware(SandboxHeaderMiddleware)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, per_path=body_limits)  # before any body is read
    app.add_middleware(RequestIdMiddleware)  # outermost: every answer, a 413 too, carries the request id

    ops = APIRouter(tags=["ops"])

    @ops.get("/healthz", name="healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @ops.get("/readyz", name="readyz", summary="Dependencies (Postgres, NATS, workers) are reachable")
    async def readyz(request: Request) -> JSONResponse:
        rt: Runtime | None = getattr(request.app.state, "runtime", None)
        if rt is None:
            return problem_response(503, {"type": "about:blank", "title": "Starting", "status": 503})
        checks = await rt.ready()
        ok = all(v == "ok" for v in checks.values())
        if ok:
            return JSONResponse({"status": "ok", "checks": checks})
        body = {"type": "about:blank", "title": "Not ready", "status": 503, "checks": checks}
        return problem_response(503, body)

    @ops.get("/metrics", name="metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics(request: Request) -> PlainTextResponse:
        rt: Runtime | None = getattr(request.app.state, "runtime", None)
        if rt is not None and rt.engine is not None:
            pool = rt.engine.pool
            DB_POOL_CHECKED_OUT.set(getattr(pool, "checkedout", lambda: 0)())
            DB_POOL_SIZE.set(getattr(pool, "size", lambda: 0)())
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(ops)
    for router in routers:
        app.include_router(router)
    app.openapi = lambda: _contract_openapi(app, dependencies=dependencies)  # type: ignore[method-assign]
    return app
