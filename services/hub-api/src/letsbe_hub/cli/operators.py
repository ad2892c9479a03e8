"""``letsbe-hub operators …``: the web console's accounts, made on the hub host (DATABASE_URL), like bootstrap-token."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from letsbe_hub.auth.scopes import Scope
from letsbe_hub.cli.api import run
from letsbe_hub.cli.bootstrap import on_hub_database

app = typer.Typer(help="Operator accounts of the web console (/console/).", no_args_is_help=True)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Sign-in name; history records this operator as operator:<name>.")],
    scope: Annotated[
        list[Scope] | None, typer.Option(help="Repeat for each scope (default: every scope).", show_default=False)
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(help="Read the password from this file (first line) instead of asking; '-' for stdin."),
    ] = None,
) -> None:
    """Create an account: password (asked twice, or --password-file) plus a new TOTP secret.

    Prints the TOTP provisioning URI (otpauth://…) once, for an authenticator app: the hub keeps the secret
    encrypted (LETSBE_HUB_OPERATOR_TOTP_KEY) and never shows it again.
    """
    run(lambda: typer.echo(asyncio.run(_create(name, scope or list(Scope), _password(password_file)))))


def _password(path: Path | None) -> str:
    if path is None:
        return typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    text = sys.stdin.read() if str(path) == "-" else path.read_text()
    return text.splitlines()[0] if text else ""


async def _create(name: str, scopes: list[Scope], password: str) -> str:
    from letsbe_hub.operators import service

    async def work(session, settings) -> str:
        created = await service.create(session, name, password, scopes, key=settings.operator_totp_key)
        typer.echo(
            f"operator {name} ({' '.join(created.operator.scopes)}); add this to an authenticator app, shown once:",
            err=True,
        )
        return created.provisioning_uri

    return await on_hub_database(work)
