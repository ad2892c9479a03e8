"""A whole hub on a real loopback port (Postgres, NATS, every worker) for ``letsbe-hub`` to talk to."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from click.testing import Result
from typer.testing import CliRunner

from hub_testing.orders import (  # noqa: F401 - fixtures
    _stripe_server,
    orders_settings,
    serve,
    stripe_fake,
    token,
)
from letsbe_hub.app import create_app
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.cli import app as cli_app
from letsbe_platform.testing import free_port

LETSBE_HUB = str(Path(sys.executable).parent / "letsbe-hub")


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


@dataclass
class Cli:
    """``letsbe-hub`` pointed at one hub, as one operator (a token with a name and scopes)."""

    url: str
    token: str
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        # XDG_CONFIG_HOME: no operator's ~/.config/letsbe/hub-token leaks into a test.
        return {"LETSBE_HUB_URL": self.url, "LETSBE_HUB_TOKEN": self.token, "XDG_CONFIG_HOME": str(self.home)} | extra

    async def __call__(self, *args: str, **env: str) -> Ran:
        """main() in-process (a thread: it runs its own event loop while the hub serves in this one)."""
        r: Result = await asyncio.to_thread(CliRunner().invoke, cli_app, list(args), env=self.env(**env))
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        return Ran(r.exit_code, r.stdout, r.stderr)

    async def proc(self, *args: str, env: dict[str, str] | None = None) -> Ran:
        """The installed command, as an operator's shell runs it."""
        p = await asyncio.create_subprocess_exec(
            LETSBE_HUB,
            *args,
            env=env if env is not None else {**os.environ, **self.env()},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(p.communicate(), timeout=60)
        return Ran(p.returncode or 0, out.decode(), err.decode())

    def as_(self, token: str) -> Cli:
        return Cli(self.url, token, self.home)


@pytest_asyncio.fixture
async def hub_url(database_url, nats_url, bus_namespace, stripe_fake) -> AsyncIterator[str]:  # noqa: F811
    settings = orders_settings(
        database_url,
        nats_url,
        bus_namespace,
        stripe_fake,
        None,
        heartbeat_interval_seconds=1,
        command_sweep_seconds=0.5,
        rollout_tick_seconds=0.2,
        lifecycle_poll_seconds=0.2,
    )
    async with serve(create_app(settings)) as url:
        yield url


@pytest_asyncio.fixture
async def cli(hub_url: str, sessions, tmp_path: Path) -> Cli:
    """An operator whose token (named ``ops-jane``) holds every scope."""
    return Cli(hub_url, await token(sessions, list(Scope), name="ops-jane"), tmp_path)


@pytest.fixture
def offline(tmp_path: Path) -> Cli:
    """``letsbe-hub`` pointed at a loopback port where nothing listens."""
    return Cli(f"http://127.0.0.1:{free_port()}", "lbh_whatever", tmp_path)
