"""The agents' process entry: ``python -m letsbe_secrets_proxy`` and ``python -m letsbe_safety_wrapper``.

An agent runs in a container with a hard memory limit (64 MB for the Secrets Proxy), so it loads only what it
uses. Some libraries import optional parts whenever they happen to be installed, and fall back cleanly when they
are not: httpx its command-line client (click, rich, pygments: not in the agents' images, but in a development
environment, where typer needs rich), structlog rich for pretty tracebacks, uvicorn its file-watching reloader
(watchfiles), FastAPI the whole of pydantic.v1 (only to refuse v1 models, which no agent has), structlog greenlet
(for contexts per greenlet: the agents have none). Together about 7 MB resident; marking them absent before anything
is imported spares an agent all of it. And uvicorn's package loads its command line (click, 3 MB) for
``uvicorn.run``: an agent uses only ``Config`` and ``Server``, so it gets uvicorn's package without that.
"""

from __future__ import annotations

import sys
from importlib import import_module
from importlib.util import find_spec, module_from_spec
from typing import Any

from letsbe_platform.startup import lifelong

UNUSED_EXTRAS = ("httpx._main", "rich", "pygments", "watchfiles", "pydantic.v1", "greenlet")


def skip_unused_extras() -> None:
    for name in UNUSED_EXTRAS:
        sys.modules.setdefault(name, None)  # type: ignore[assignment]  # None: "import name" raises ImportError
    if "uvicorn" not in sys.modules:
        _uvicorn_without_cli()


def _uvicorn_without_cli() -> None:
    """``import uvicorn`` as its package has it, minus ``uvicorn.main`` (the click CLI and ``run``)."""
    spec = find_spec("uvicorn")
    assert spec is not None and spec.loader is not None
    package = module_from_spec(spec)  # the package, its __init__ not run
    sys.modules["uvicorn"] = package
    from uvicorn.config import Config
    from uvicorn.server import Server

    package.Config, package.Server = Config, Server  # what uvicorn's own modules and ours take from the package


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(import_module(module), attr)


def serve_agent(app_factory: str, settings_class: str) -> None:
    """Serve ``module:create_app`` with ``module:Settings`` loaded from the environment (an unknown LETSBE_ variable
    or an invalid value exits 1 with one line); both are imported only after the extras are skipped."""
    skip_unused_extras()
    with lifelong():  # imports and settings: built once, kept for the process's life
        from letsbe_agent.settings import load_settings
        from letsbe_platform.serve import serve

        factory, settings = _load(app_factory), load_settings(_load(settings_class))
    serve(factory, settings, lean=True)
