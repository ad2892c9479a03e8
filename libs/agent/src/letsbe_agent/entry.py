"""The agents' process entry: ``python -m letsbe_secrets_proxy`` and ``python -m letsbe_safety_wrapper``.

An agent runs in a container with a hard memory limit (64 MB for the Secrets Proxy), so it loads only what it
uses. Some libraries import optional parts whenever they happen to be installed, and fall back cleanly when they
are not: httpx its command-line client (click, rich, pygments: not in the agents' images, but in a development
environment, where typer needs rich), structlog rich for pretty tracebacks, uvicorn its file-watching reloader
(watchfiles), FastAPI the whole of pydantic.v1 (only to refuse v1 models, which no agent has). Together about
6 MB resident; marking them absent before anything is imported spares an agent all of it.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any

UNUSED_EXTRAS = ("httpx._main", "rich", "pygments", "watchfiles", "pydantic.v1")


def skip_unused_extras() -> None:
    for name in UNUSED_EXTRAS:
        sys.modules.setdefault(name, None)  # type: ignore[assignment]  # None: "import name" raises ImportError


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(import_module(module), attr)


def serve_agent(app_factory: str, settings_class: str) -> None:
    """Serve ``module:create_app`` with ``module:Settings`` loaded from the environment (an unknown LETSBE_ variable
    or an invalid value exits 1 with one line); both are imported only after the extras are skipped."""
    skip_unused_extras()
    from letsbe_agent.settings import load_settings
    from letsbe_platform.serve import serve

    serve(_load(app_factory), load_settings(_load(settings_class)), lean=True)
