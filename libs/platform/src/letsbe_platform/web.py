"""The pieces every service's FastAPI app shares: runtime resources, errors, health, metrics.

The database and the bus are imported only by a runtime that uses them: the tenant agents run with neither and
must not pay for SQLAlchemy or nats-py (their memory limit is 64 MB). The session dependency lives in ``db``
(``SessionDep`` is still importable from here, loaded on first use).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

# The FastAPI-free pieces (the Secrets Proxy runs on them alone), importable from here as before.
from letsbe_platform.asgi import (  # noqa: F401
    DEFAULT_MAX_BODY_BYTES,
    REQUEST_ID_HEADER,
    SANDBOX_HEADER,
    BodySizeLimitMiddleware,
    BodyTooLarge,
    MetricsMiddleware,
    RequestIdMiddleware,
    Runtime,
    SandboxHeaderMiddleware,
    Slot,
    _body_too_large,
    _domain_error,
    _http_error,
    _unhandled,
    metrics_text,
    problem_response,
    readiness,
    request_id,
    runtime,
)
from letsbe_platform.errors import PROBLEM_BASE, PROBLEM_JSON, DomainError, Unprocessable


def __getattr__(name: str) -> Any:
    if name == "SessionDep":  # kept here for the services that import it from web
        from letsbe_platform.db import SessionDep

        return SessionDep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


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
        return await readiness(request)

    @ops.get("/metrics", name="metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics(request: Request) -> PlainTextResponse:
        return metrics_text(request)

    app.include_router(ops)
    for router in routers:
        app.include_router(router)
    app.openapi = lambda: _contract_openapi(app, dependencies=dependencies)  # type: ignore[method-assign]
    return app
