"""``letsbe-hub tokens …`` (scope tokens:admin)."""

from __future__ import annotations

from typing import Annotated

import typer

from letsbe_hub.auth.scopes import Scope
from letsbe_hub.cli.api import Hub, api_command

app = typer.Typer(help="Operator API tokens: mint and revoke.", no_args_is_help=True)


@api_command(app, "create")
def create(
    hub: Hub,
    name: Annotated[str, typer.Option(help="Who or what uses it; the hub records it as the actor.")],
    scope: Annotated[list[Scope], typer.Option(help="Repeat for each scope.")],
) -> None:
    """Mint a token (tokens:admin). The plaintext is printed once; the hub keeps only its hash."""
    answer = hub.post("/api/v1/admin/tokens", {"name": name, "scopes": [s.value for s in scope]})
    hub.emit(answer, _created)


def _created(t: dict) -> str:
    # stdout carries only the plaintext (TOKEN=$(letsbe-hub tokens create …)); what it is goes to stderr.
    typer.echo(f"token {t['id']} ({t['name']}: {' '.join(t['scopes'])}), shown once:", err=True)
    return t["token"]


@api_command(app, "revoke")
def revoke(hub: Hub, token_id: Annotated[str, typer.Argument(help="The token's id (from `tokens create`).")]) -> None:
    """Revoke a token: a 401 from now on (tokens:admin)."""
    hub.call("DELETE", f"/api/v1/admin/tokens/{token_id}")
    hub.emit({"id": token_id, "revoked": True}, lambda _: f"token {token_id} revoked")
