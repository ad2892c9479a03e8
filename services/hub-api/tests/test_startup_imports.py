"""Start-up stays lean: what only one code path needs is imported there, not by every hub process and CLI command."""

from __future__ import annotations

import json
import subprocess
import sys

# Imported by the one function that uses each of them.
HUB_LAZY = {"asyncssh", "stripe", "disposable_email_domains"}
# `letsbe-hub` is an HTTP client: no database, bus, web framework or event contracts before a command needs them.
CLI_LAZY = HUB_LAZY | {"sqlalchemy", "asyncpg", "nats", "fastapi", "argon2", "letsbe_contracts.events"}


def loaded_after(module: str, watched: set[str]) -> set[str]:
    code = f"import sys, json, {module}; print(json.dumps([m for m in {sorted(watched)!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return set(json.loads(out.stdout))


def test_the_hub_app_and_the_cli_leave_their_heavy_dependencies_to_the_code_that_uses_them():
    assert loaded_after("letsbe_hub.app", HUB_LAZY) == set()
    assert loaded_after("letsbe_hub.cli", CLI_LAZY) == set()
