"""``letsbe-hub bootstrap-token``: a command that writes to the database instead of calling the API (as does
``operators create``, the other root of authority).

It mints the first operator token on the hub host (where DATABASE_URL is), when no token can mint one yet;
every other operator action goes through the API with a token, so its scopes apply and its name is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from letsbe_hub.auth.scopes import Scope
from letsbe_hub.cli.api import EXIT_HUB_ERROR, EXIT_NO_ANSWER, CliError, run

T = TypeVar("T")


def bootstrap_token(
    name: Annotated[str, typer.Option(help="Who uses it; the hub records it as the actor.")] = "ops",
    scope: Annotated[
        list[Scope] | None, typer.Option(help="Repeat for each scope (default: every scope).", show_default=False)
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Mint one even though an unrevoked tokens:admin token exists (all lost).")
    ] = False,
) -> None:
    """On the hub host, with DATABASE_URL set: mint the first operator token straight in the database.

    Prints the token once (only its hash is stored). Refuses when an unrevoked token with tokens:admin already
    exists (mint more with `letsbe-hub tokens create`), unless --force.
    """
    run(lambda: typer.echo(asyncio.run(_mint(name, scope or list(Scope), force))))


async def _mint(name: str, scopes: list[Scope], force: bool) -> str:
    from letsbe_hub.auth.service import create_token, has_active_admin_token

    async def mint(session, _settings) -> str:
        if not force and await has_active_admin_token(session):
            raise CliError(
                "an unrevoked tokens:admin token exists: mint more with `letsbe-hub tokens create` "
                "(or --force if every such token is lost)",
                EXIT_HUB_ERROR,
            )
        _, plaintext = await create_token(session, name, scopes)
        return plaintext

    return await on_hub_database(mint)


async def on_hub_database(work: Callable[[Any, Any], Awaitable[T]]) -> T:
    """``work(session, settings)`` in one transaction on the hub's database (DATABASE_URL), logs on stderr."""
    # Imported here: every other command runs without the database layer.
    from sqlalchemy.exc import DBAPIError, OperationalError

    from letsbe_hub.config import HubSettings
    from letsbe_platform.db import make_engine, make_session_factory, unit_of_work
    from letsbe_platform.errors import DomainError
    from letsbe_platform.logging import configure_logging

    settings = HubSettings()
    if not settings.database_url:
        raise CliError(
            "DATABASE_URL is not set (run this on the hub host, where the hub's database is)", EXIT_NO_ANSWER
        )
    configure_logging(settings.service_name, "WARNING", settings.log_json)
    for handler in logging.getLogger().handlers:  # stdout carries the secret only
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with unit_of_work(make_session_factory(engine)) as session:
            return await work(session, settings)
    except DomainError as exc:
        raise CliError(exc.detail, EXIT_HUB_ERROR) from exc
    except (OSError, OperationalError, DBAPIError) as exc:
        raise CliError(f"cannot use the hub's database: {str(exc).splitlines()[0][:300]}", EXIT_NO_ANSWER) from exc
    finally:
        await engine.dispose()
