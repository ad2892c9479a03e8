"""The pieces every service's FastAPI app shares: runtime resources, errors, health, metrics.

The database and the bus are imported only by a runtime that uses them: the tenant agents run with neither and
must not pay for SQLAlchemy or nats-py (their memory limit is 64 MB). The session dependency lives in ``db``
(``SessionDep`` is still importable from here, loaded on first use).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from letsbe_platform.errors import PROBLEM_BASE, PROBLEM_JSON, DomainError
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
    log.exception("unhandled error", path=request.url.path)
    body = {"type": "about:blank", "title": "Internal Server Error", "status": 500, "instance": request.url.path}
    return problem_response(500, body)


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


class BodyLimitMiddleware:
    """Refuses a request body larger than ``max_bytes`` with 413 problem+json before it is held in memory: at once
    when Content-Length says so, else as soon as the bytes read pass it. (Starlette's own limit answers in plain
    text when Content-Length is too large.)"""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"The request body is larger than {self.max_bytes} bytes."
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            body = {"type": "about:blank", "title": detail, "status": 413, "detail": detail, "instance": scope["path"]}
            await problem_response(413, body)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, detail)  # FastAPI passes an HTTPException from body reading on
            return message

        await self.app(scope, limited, send)


def _operation_id(route: APIRoute) -> str:
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}-{route.name}"


# --- the factory -------------------------------------------------------------------------------------------------


def create_service_app(
    *,
    title: str,
    version: str,
    lifespan: Callable[[FastAPI], Any],
    routers: Iterable[APIRouter] = (),
    description: str = "",
    middleware: Iterable[tuple[type, dict[str, Any]]] = (),
    max_body_size: int | None = None,
) -> FastAPI:
    """An app with the shared health, readiness, metrics and problem+json behaviour.

    ``lifespan`` must set ``app.state.runtime`` (a :class:`Runtime`) before it yields. ``max_body_size``: a larger
    request body is refused with 413 (problem+json) while it is read, before it is held whole in memory.
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
    if max_body_size is not None:
        app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_size)
    for cls, options in middleware:
        app.add_middleware(cls, **options)
    app.add_middleware(SandboxHeaderMiddleware)
    app.add_middleware(MetricsMiddleware)

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
    return app
