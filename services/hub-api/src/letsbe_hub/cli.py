"""``letsbe-hub``: what an operator scripts. Talks to the database directly for bootstrap tasks."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from letsbe_hub.auth.scopes import Scope
from letsbe_hub.auth.service import create_token
from letsbe_hub.config import HubSettings
from letsbe_hub.orders import cli as orders_cli
from letsbe_hub.rollouts import cli as rollouts_cli
from letsbe_hub.servers import cli as servers_cli
from letsbe_platform.db import make_engine, make_session_factory, unit_of_work

app = typer.Typer(help="LetsBe Hub operator commands", no_args_is_help=True)
app.add_typer(rollouts_cli.app, name="rollout")
app.add_typer(orders_cli.app, name="orders")
app.add_typer(servers_cli.app, name="servers")


@app.command("create-token")
def create_token_cmd(
    name: Annotated[str, typer.Option(help="who or what uses the token")],
    scope: Annotated[list[Scope], typer.Option(help="repeat for each scope")],
) -> None:
    """Create an API token and print it once (only its hash is stored)."""

    async def run() -> str:
        settings = HubSettings()
        if not settings.database_url:
            raise typer.BadParameter("DATABASE_URL is not set")
        engine = make_engine(settings.database_url, pool_size=1)
        try:
            async with unit_of_work(make_session_factory(engine)) as session:
                _, plaintext = await create_token(session, name, scope)
        finally:
            await engine.dispose()
        return plaintext

    typer.echo(asyncio.run(run()))


def main() -> None:
    app()
