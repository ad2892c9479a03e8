"""``letsbe-hub``: what an operator scripts. Talks to the database directly for bootstrap tasks."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.auth.scopes import Scope
from letsbe_hub.auth.service import create_token
from letsbe_hub.cli_session import run_in_session
from letsbe_hub.orders import cli as orders_cli
from letsbe_hub.rollouts import cli as rollouts_cli
from letsbe_hub.servers import cli as servers_cli

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

    async def work(session: AsyncSession, _settings: object) -> str:
        _, plaintext = await create_token(session, name, scope)
        return plaintext

    typer.echo(run_in_session(work))


def main() -> None:
    app()
