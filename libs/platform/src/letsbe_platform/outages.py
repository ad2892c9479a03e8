"""503 problem+json (with Retry-After) while Postgres or NATS is unreachable, 400 for a value Postgres refuses.

Only a service with a database or a bus loads this (``web.add_input_guards``): the tenant agents, which have
neither, never import asyncpg, NATS or SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import nats.errors
import nats.js.errors
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError as SQLAlchemyDataError
from sqlalchemy.exc import DBAPIError

from letsbe_platform.db import PostgresUnreachable
from letsbe_platform.errors import PROBLEM_BASE
from letsbe_platform.logging import get_logger
from letsbe_platform.web import _unhandled, problem_response

log = get_logger(__name__)

RETRY_AFTER_SECONDS = 5
_POSTGRES_DOWN = (
    PostgresUnreachable,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)
_NATS_DOWN = (nats.errors.Error, nats.js.errors.Error)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def infrastructure_down(exc: BaseException) -> str | None:
    """Which of our own infrastructure ("Postgres" or "NATS") ``exc``, or what caused it, says is unreachable. Ours
    is shared by every request and handler: its outage says nothing about the work at hand."""
    for e in _chain(exc):
        if isinstance(e, _POSTGRES_DOWN) or (isinstance(e, DBAPIError) and e.connection_invalidated):
            return "Postgres"
        if isinstance(e, _NATS_DOWN):
            return "NATS"
    return None


def dependency_problem(request: Request, exc: BaseException) -> JSONResponse | None:
    """503 (with Retry-After) when Postgres or NATS is unreachable, 400 when Postgres refuses a value of the request
    (a data exception, SQLSTATE class 22); None for anything else, which stays a 500."""
    down = infrastructure_down(exc)
    if down is None and any(isinstance(e, ConnectionError | TimeoutError) for e in _chain(exc)):
        down = "A dependency"
    if down is not None:
        log.warning("dependency unavailable", path=request.url.path, dependency=down, error=type(exc).__name__)
        body = {
            "type": PROBLEM_BASE + "unavailable",
            "title": "Service unavailable",
            "status": 503,
            "detail": f"{down} is unreachable right now; try again shortly.",
            "instance": request.url.path,
        }
        return problem_response(503, body, {"Retry-After": str(RETRY_AFTER_SECONDS)})
    if any(isinstance(e, SQLAlchemyDataError | asyncpg.DataError) for e in _chain(exc)):
        log.warning("input refused by the database", path=request.url.path, error=type(exc).__name__)
        body = {
            "type": PROBLEM_BASE + "invalid-input",
            "title": "Invalid input",
            "status": 400,
            "detail": "A value of this request is out of range or not valid text.",
            "instance": request.url.path,
        }
        return problem_response(400, body)
    return None


async def _dependency_error(request: Request, exc: Exception) -> JSONResponse:
    return dependency_problem(request, exc) or await _unhandled(request, exc)


def install(app: FastAPI) -> None:
    for cls in DEPENDENCY_ERRORS:
        app.add_exception_handler(cls, _dependency_error)


# Answered by ExceptionMiddleware (no traceback logged for an outage); anything wrapped differently still reaches
# ``_unhandled``, which asks ``dependency_problem`` too.
DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    DBAPIError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    *_NATS_DOWN,
    ConnectionError,
    TimeoutError,
)
