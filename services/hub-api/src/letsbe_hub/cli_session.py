"""One transaction against the hub's database for an operator command (no running hub needed)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.config import HubSettings
from letsbe_platform.db import make_engine, make_session_factory, unit_of_work
from letsbe_platform.errors import DomainError
from letsbe_platform.logging import configure_logging

T = TypeVar("T")


def run_in_session(work: Callable[[AsyncSession, HubSettings], Awaitable[T]]) -> T:
    """Run ``work`` in one committed transaction; a domain error is printed and exits 1."""
    settings = HubSettings()
    if not settings.database_url:
        raise typer.BadParameter("DATABASE_URL is not set")
    # stdout carries the command's result; logs (warnings and up) go to stderr.
    configure_logging(settings.service_name, "WARNING", settings.log_json)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)

    async def go() -> T:
        engine = make_engine(settings.database_url or "", pool_size=1)
        try:
            async with unit_of_work(make_session_factory(engine)) as session:
                return await work(session, settings)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except DomainError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
