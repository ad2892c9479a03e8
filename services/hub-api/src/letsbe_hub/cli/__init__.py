"""``letsbe-hub``: the operator's command line, a client of the hub's HTTP API.

Every command but ``bootstrap-token`` and ``operators create`` calls the API with the operator's token, so the
token's scopes decide what it may do and the hub records the token's name as the actor.
"""

from __future__ import annotations

import typer

from letsbe_hub.cli import alerts, fleet, lifecycle, operators, orders, servers, tokens
from letsbe_hub.cli.api import api_command
from letsbe_hub.cli.bootstrap import bootstrap_token

app = typer.Typer(
    help=(
        "LetsBe Hub operator commands, over the hub's HTTP API.\n\n"
        "Connection: --hub-url or LETSBE_HUB_URL (default http://127.0.0.1:3847); the token from --token or "
        "LETSBE_HUB_TOKEN, else --token-file or LETSBE_HUB_TOKEN_FILE, else ~/.config/letsbe/hub-token. "
        "Output: tables, or the API's JSON with --json.\n\n"
        "Exit codes: 0 done; 3 the hub answered an error (its status and problem on one line); 4 no answer "
        "(no token, hub unreachable); 2 bad usage; `orders watch`: 1 FAILED, 2 CANCELLED; `rollouts watch`: 2 ABORTED."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(orders.app, name="orders")
app.add_typer(servers.app, name="servers")
app.add_typer(servers.pools, name="pools")
app.add_typer(fleet.tenants, name="tenants")
app.add_typer(fleet.commands, name="commands")
app.add_typer(fleet.rollouts, name="rollouts")
app.add_typer(fleet.approvals, name="approvals")
app.add_typer(lifecycle.app, name="lifecycle")
app.add_typer(alerts.app, name="alerts")
app.add_typer(tokens.app, name="tokens")
app.add_typer(operators.app, name="operators")
api_command(app, "health")(alerts.health)
app.command("bootstrap-token")(bootstrap_token)


def main() -> None:
    app()
