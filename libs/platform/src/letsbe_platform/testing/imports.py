"""Which modules a running service process has loaded.

The tenant agents live under small memory limits: their import-budget tests start an agent as production does
(``python -m <package>``, through :func:`module_argv`), use it, then ask it for its ``sys.modules``
(:func:`loaded_modules`) and fail when any of these is there (database, bus, CLI and provider code that only the
hub's services use).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from letsbe_platform.testing import eventually_blocking

FORBIDDEN_IN_AGENTS = (
    "sqlalchemy", "asyncpg", "nats", "rich", "typer", "jinja2", "asyncssh", "stripe", "cloudflare",
    # Replaced in the agents by the standard library (about 8 MB and 1 MB resident): keep it that way.
    "cryptography", "psutil",
    # The agents read their settings with letsbe_agent.settings (about 2 MB less).
    "pydantic_settings", "dotenv",
)


def module_argv(module: str, dump_path: Path) -> list[str]:
    """``python -m module`` (run by runpy exactly as ``-m`` runs it) that writes the names of its loaded modules
    to ``dump_path`` on SIGUSR1."""
    code = (
        "import json, runpy, signal, sys\n"
        "def dump(*_):\n"
        f"    with open({str(dump_path)!r}, 'w') as fh:\n"
        "        json.dump(sorted(k for k, v in sys.modules.items() if v is not None), fh)\n"
        "signal.signal(signal.SIGUSR1, dump)\n"
        f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
    )
    return [sys.executable, "-c", code]


async def loaded_modules(pid: int, dump_path: Path, timeout: float = 10.0) -> set[str]:
    return await asyncio.to_thread(_ask, pid, dump_path, timeout)


def _ask(pid: int, dump_path: Path, timeout: float) -> set[str]:
    dump_path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)

    def dumped() -> set[str] | None:
        try:
            return set(json.loads(dump_path.read_text()))
        except (FileNotFoundError, ValueError):  # not written yet, or half written
            return None

    return eventually_blocking(dumped, f"process {pid}'s loaded modules", timeout=timeout)


def forbidden(modules: set[str], packages: tuple[str, ...] = FORBIDDEN_IN_AGENTS) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in packages)
