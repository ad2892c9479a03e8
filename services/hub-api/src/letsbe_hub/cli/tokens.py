"""``letsbe-hub tokens …`` (scope tokens:admin)."""

from __future__ import annotations

from typing import Annotated

import typer

from letsbe_hub.auth.scopes import Scope
from letsbe_hub.cli.api import AllPages, CursorOpt, Hub, Limit, api_command, show_list

app = typer.Typer(help="Operator API tokens: mint, review and revoke.", no_args_is_help=True)

COLUMNS = [
    ("ID", "id"),
    ("NAME", "name"),
    ("SCOPES", lambda t: ",".join(t["scopes"])),
    ("CREATED", "created_at"),
    ("LAST_USED", "last_used_at"),
    ("REVOKED", "revoked_at"),
]


@api_command(app, "list")
def list_tokens(
    hub: Hub,
    status: Annotated[str, typer.Option(help="active, revoked or all.")] = "active",
    limit: Limit = None,
    cursor: CursorOpt = None,
    all_pages: AllPages = False,
) -> None:
    """Tokens, newest first, never their values (tokens:admin). LAST_USED is kept to about 5 minutes."""
    show_list(hub, "/api/v1/admin/tokens", {"status": status}, COLUMNS, limit=limit, cursor=cursor, all_pages=all_pages)


@api_command(app, "show")
def show(hub: Hub, token_id: Annotated[str, typer.Argument(help="The token's id.")]) -> None:
    """One token, without its value (tokens:admin)."""
    hub.emit(hub.get(f"/api/v1/admin/tokens/{token_id}"))


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
