"""structlog JSON lines for every service; stdlib loggers (uvicorn, alembic, nats) go through the same pipeline."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

# Keys whose values are never written to a log, whatever a caller binds.
_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|api[_-]?key|authorization|private[_-]?key|credential)", re.I)


def _redact_secrets(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in list(event_dict):
        if key != "event" and _SECRET_KEY.search(key):
            event_dict[key] = "[redacted]"
    return event_dict


_service_name = "letsbe"


def _add_service(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Every line names its service. A processor, not a context variable: lines logged in tasks that did not
    inherit the lifespan's context (uvicorn's request tasks, other libraries' threads) carry it too."""
    event_dict.setdefault("service", _service_name)
    return event_dict


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    """Within a request, lines also carry ``request_id`` (web.RequestIdMiddleware); within an event handler
    ``event_id``, ``event_type``, ``consumer`` and the chain's ``correlation_id`` (bus.Consumer)."""
    global _service_name
    _service_name = service
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_service,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
    ]
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    structlog.contextvars.clear_contextvars()


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
