"""``letsbe-hub tenants|commands|rollouts|approvals …`` (scopes fleet:read / fleet:write, tenants:enroll)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Annotated, Any

import typer

from letsbe_contracts import Region, Tier
from letsbe_hub.cli.api import (
    EXIT_NO_ANSWER,
    AllPages,
    CliError,
    CursorOpt,
    Hub,
    Limit,
    api_command,
    follow,
    render,
    show_list,
    table,
)

tenants = typer.Typer(
    help="Tenants: list, inspect, staging, agents, registration and app tokens, tools, decommission.",
    no_args_is_help=True,
)
commands = typer.Typer(help="Commands to one tenant's agent: queue, list, inspect, cancel.", no_args_is_help=True)
rollouts = typer.Typer(
    help="Fleet rollouts: create, list, inspect, pause, resume, approve, abort.", no_args_is_help=True
)
approvals = typer.Typer(
    help="Gated tool calls waiting for a person: list, inspect, approve, reject.", no_args_is_help=True
)

TenantId = Annotated[str, typer.Argument(help="The tenant's id (its order's id).")]


# --- tenants --------------------------------------------------------------------------------------------------------

TENANT_COLUMNS = [
    ("TENANT", "tenant_id"),
    ("DOMAIN", "domain"),
    ("TIER", "tier"),
    ("REGION", "region"),
    ("STATUS", "status"),
    ("STAGING", "staging"),
    ("AGENTS", lambda t: ",".join(a["agent"] for a in t.get("agents") or [] if not a.get("revoked_at")) or "-"),
]


@api_command(tenants, "list")
def list_tenants(
    hub: Hub,
    domain: Annotated[str | None, typer.Option(help="Only this domain.")] = None,
    domain_suffix: Annotated[str | None, typer.Option(help="Only this domain and its subdomains.")] = None,
    status: Annotated[list[str] | None, typer.Option(help="PENDING, ACTIVE or DECOMMISSIONED; repeat.")] = None,
    staging: Annotated[
        bool | None, typer.Option("--staging/--not-staging", help="Only staging tenants, or only the others.")
    ] = None,
    limit: Limit = None,
    cursor: CursorOpt = None,
    all_pages: AllPages = False,
) -> None:
    """Tenants, newest first (fleet:read)."""
    params = {
        "domain": domain,
        "domain_suffix": domain_suffix,
        "status": status or [],
        "staging": None if staging is None else str(staging).lower(),
    }
    path = "/api/v1/admin/tenants"
    show_list(hub, path, params, TENANT_COLUMNS, limit=limit, cursor=cursor, all_pages=all_pages)


@api_command(tenants, "show")
def show_tenant(hub: Hub, tenant_id: TenantId) -> None:
    """One tenant with its agents and component versions (fleet:read or tenants:enroll)."""
    hub.emit(hub.get(f"/api/v1/admin/tenants/{tenant_id}"))


@api_command(tenants, "staging")
def staging(
    hub: Hub, tenant_id: TenantId, on: Annotated[bool, typer.Option("--on/--off", help="Staging or not.")] = True
) -> None:
    """Mark a tenant as a staging tenant (rollouts start there), or unmark it (fleet:write)."""
    answer = hub.call("PATCH", f"/api/v1/admin/tenants/{tenant_id}", body={"staging": on})
    hub.emit(answer, lambda t: f"{t['tenant_id']}  staging={'yes' if t['staging'] else 'no'}")


@api_command(tenants, "agent-details")
def agent_details(hub: Hub, tenant_id: TenantId, agent_id: Annotated[str, typer.Argument()]) -> None:
    """The latest heavy part of an agent's heartbeat: disk, memory, versions, containers (fleet:read)."""
    hub.emit(hub.get(f"/api/v1/admin/tenants/{tenant_id}/agents/{agent_id}/details"))


@api_command(tenants, "revoke-agent")
def revoke_agent(hub: Hub, tenant_id: TenantId, agent_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke an agent and all its credentials; it must re-enrol with a new registration token (fleet:write)."""
    hub.post(f"/api/v1/admin/tenants/{tenant_id}/agents/{agent_id}/revoke")
    hub.emit({"agent_id": agent_id, "revoked": True}, lambda _: f"agent {agent_id} revoked")


@api_command(tenants, "registration-token")
def registration_token(
    hub: Hub,
    tenant_id: TenantId,
    domain: Annotated[str, typer.Option(help="The tenant's domain.")],
    tier: Annotated[Tier, typer.Option()],
    region: Annotated[Region, typer.Option()],
    order_id: Annotated[str | None, typer.Option(help="Default: the tenant id.")] = None,
    server_id: Annotated[str | None, typer.Option()] = None,
) -> None:
    """A single-use registration token for one agent (tenants:enroll; creates the tenant the first time)."""
    body = {"domain": domain, "order_id": order_id or tenant_id, "tier": tier.value, "region": region.value}
    answer = hub.post(
        f"/api/v1/admin/tenants/{tenant_id}/registration-tokens", body | ({"server_id": server_id} if server_id else {})
    )
    hub.emit(answer, lambda t: t["token"])


@api_command(tenants, "app-token")
def app_token(
    hub: Hub,
    tenant_id: TenantId,
    label: Annotated[str, typer.Option(help="Which app or device it is for.")] = "app",
) -> None:
    """A customer app token for the chat relay to this tenant (fleet:write); printed once, the hub keeps a hash."""
    answer = hub.post(f"/api/v1/admin/tenants/{tenant_id}/customer-app-tokens", {"label": label})
    hub.emit(answer, lambda t: t["token"])


@api_command(tenants, "revoke-app-token")
def revoke_app_token(hub: Hub, tenant_id: TenantId, token_id: Annotated[str, typer.Argument()]) -> None:
    """The customer app token stops opening relay connections (fleet:write)."""
    hub.call("DELETE", f"/api/v1/admin/tenants/{tenant_id}/customer-app-tokens/{token_id}")
    hub.emit({"token_id": token_id, "revoked": True}, lambda _: f"app token {token_id} revoked")


@api_command(tenants, "decommission")
def decommission(
    hub: Hub,
    tenant_id: TenantId,
    reason: Annotated[str, typer.Option(help="Why.")] = "decommissioned by an operator",
) -> None:
    """Revoke the tenant's agents and release what every service holds for it; idempotent (fleet:write)."""
    answer = hub.post(f"/api/v1/admin/tenants/{tenant_id}/decommission", {"reason": reason})
    hub.emit(answer, lambda t: f"{t['tenant_id']}  {t['status']}")


RotatedKey = Annotated[
    str, typer.Argument(help="tools-token, sentinel-key or secrets-key (llm-key and agent: `commands create`).")
]


@api_command(tenants, "rotate-key")
def rotate_key(
    hub: Hub,
    tenant_id: TenantId,
    key: RotatedKey,
    idempotency_key: Annotated[str | None, typer.Option(help="The same key answers the first rotation.")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until it has run; exit 1 if it failed.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 600,
) -> None:
    """Rotate one of the tenant's AI-stack keys: a new value, stored encrypted, rendered into the env files of the
    containers that use it, which are recreated (fleet:write). Recorded in the tenant's commands with your name."""
    body: dict[str, Any] = {"type": "rotate-credential", "params": {"credential": key}}
    if idempotency_key:
        body["idempotency_key"] = idempotency_key
    command = hub.post(f"/api/v1/admin/tenants/{tenant_id}/commands", body)
    if wait:
        path = f"/api/v1/admin/commands/{command['id']}"
        command = _until_final(hub, command, path, FINAL_COMMAND_STATUSES, f"command {command['id']}", timeout)
    hub.emit(command, lambda c: f"{c['id']}  rotate {key}  {c['status']}  (by {c['created_by']})" + (
        f": {c['error']}" if c.get("error") else ""))
    if wait and command["status"] != "SUCCEEDED":
        raise typer.Exit(1)


ToolArg = Annotated[str, typer.Argument(help="A catalog tool name (`letsbe-hub catalog` lists them).")]
WaitOpt = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the job is done; exit 1 if it failed.")]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds to wait.")]
FINAL_JOB_STATUSES = ("SUCCEEDED", "FAILED", "CANCELLED")


def _until_final(hub: Hub, item: dict[str, Any], path: str, final: Iterable[str], what: str, timeout: float) -> dict:
    """``item`` read again from ``path`` every second until its status is one of ``final``; past ``timeout`` the
    CLI exits with EXIT_NO_ANSWER (it may still finish)."""
    deadline = time.monotonic() + timeout
    while item["status"] not in final:
        if time.monotonic() >= deadline:
            raise CliError(f"{what} is still {item['status']} after {timeout:g}s", EXIT_NO_ANSWER)
        time.sleep(1)
        item = hub.get(path)
    return item


def _follow_tool_change(hub: Hub, job: dict[str, Any], wait: bool, timeout: float) -> None:
    if wait:
        path = f"/api/v1/admin/lifecycle/jobs/{job['job_id']}"
        job = _until_final(hub, job, path, FINAL_JOB_STATUSES, f"job {job['job_id']}", timeout)
    d = job["data"]
    hub.emit(job, lambda j: f"{j['job_id']}  {d['action']} {d['tool']}  {j['status']}" + (
        f": {j['last_error']}" if j["status"] == "FAILED" and j.get("last_error") else ""))  # fmt: skip
    if wait and job["status"] != "SUCCEEDED":
        raise typer.Exit(1)


@api_command(tenants, "add-tool")
def add_tool(
    hub: Hub,
    tenant_id: TenantId,
    tool: ToolArg,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the job's history).")] = None,
    wait: WaitOpt = True,
    timeout: TimeoutOpt = 900,
) -> None:
    """Add a tool to a live tenant: its DNS record, stack, vhost, backup config and the Safety Wrapper's routes, as
    a resumable job; refused when the tools would not fit the tier's memory (fleet:write)."""
    body: dict[str, Any] = {"tool": tool}
    if reason:
        body["reason"] = reason
    _follow_tool_change(hub, hub.post(f"/api/v1/admin/tenants/{tenant_id}/tools", body), wait, timeout)


@api_command(tenants, "remove-tool")
def remove_tool(hub: Hub, tenant_id: TenantId, tool: ToolArg, wait: WaitOpt = True, timeout: TimeoutOpt = 900) -> None:
    """Remove a tool from a live tenant, keeping a final backup of its data on the server first
    (/var/backups/letsbe/final/<tool>/<job id>) (fleet:write)."""
    _follow_tool_change(hub, hub.call("DELETE", f"/api/v1/admin/tenants/{tenant_id}/tools/{tool}"), wait, timeout)


# --- commands -------------------------------------------------------------------------------------------------------

FINAL_COMMAND_STATUSES = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ROLLED_BACK", "CANCELLED")

COMMAND_COLUMNS = [
    ("ID", "id"),
    ("TYPE", "type"),
    ("AGENT", "agent"),
    ("STATUS", "status"),
    ("BY", "created_by"),
    ("CREATED", "created_at"),
    ("ERROR", "error"),
]


def _params(pairs: list[str], raw: str | None) -> dict[str, Any]:
    """``--params '{…}'`` and ``--param key=value`` (a JSON value, or else a string) merged."""
    try:
        params: Any = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise CliError(f"--params is not JSON: {exc}", 2) from exc
    if not isinstance(params, dict):
        raise CliError("--params must be a JSON object", 2)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--param wants key=value, not {pair!r}", 2)
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


@api_command(commands, "create")
def create_command(
    hub: Hub,
    tenant_id: TenantId,
    type_: Annotated[str, typer.Option("--type", help="update, restart or config-sync.")],
    param: Annotated[list[str] | None, typer.Option(help="key=value (value as JSON if it parses); repeat.")] = None,
    params: Annotated[str | None, typer.Option(help="All params as one JSON object.")] = None,
    agent: Annotated[str | None, typer.Option(help="safety-wrapper or secrets-proxy; default: by type.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="The same key answers the first command.")] = None,
    expires_in: Annotated[int | None, typer.Option(help="Seconds until an unstarted command expires.")] = None,
    deadline: Annotated[int | None, typer.Option(help="Seconds the agent may run it.")] = None,
) -> None:
    """Queue a command for one tenant's agent (fleet:write)."""
    body = {
        "type": type_,
        "params": _params(param or [], params),
        "agent": agent,
        "idempotency_key": idempotency_key,
        "expires_in_seconds": expires_in,
        "deadline_seconds": deadline,
    }
    answer = hub.post(f"/api/v1/admin/tenants/{tenant_id}/commands", {k: v for k, v in body.items() if v is not None})
    hub.emit(answer, lambda c: f"{c['id']}  {c['type']}  {c['status']}  (by {c['created_by']})")


@api_command(commands, "list")
def list_commands(
    hub: Hub,
    tenant_id: TenantId,
    status: Annotated[list[str] | None, typer.Option(help="QUEUED, DELIVERED, RUNNING, SUCCEEDED, …; repeat.")] = None,
    limit: Limit = None,
    cursor: CursorOpt = None,
    all_pages: AllPages = False,
) -> None:
    """One tenant's commands, newest first (fleet:read)."""
    path = f"/api/v1/admin/tenants/{tenant_id}/commands"
    show_list(hub, path, {"status": status or []}, COMMAND_COLUMNS, limit=limit, cursor=cursor, all_pages=all_pages)


@api_command(commands, "show")
def show_command(hub: Hub, command_id: Annotated[str, typer.Argument()]) -> None:
    """One command with its transitions (fleet:read)."""
    hub.emit(hub.get(f"/api/v1/admin/commands/{command_id}"))


@api_command(commands, "cancel")
def cancel_command(hub: Hub, command_id: Annotated[str, typer.Argument()]) -> None:
    """Cancel a command that has not started running (fleet:write)."""
    hub.emit(hub.post(f"/api/v1/admin/commands/{command_id}/cancel"), lambda c: f"{c['id']}  {c['status']}")


# --- rollouts -------------------------------------------------------------------------------------------------------

RolloutId = Annotated[str, typer.Argument(help="The rollout's id.")]
ROLLOUT_COLUMNS = [
    ("ID", "id"),
    ("COMPONENT", "component"),
    ("VERSION", "version"),
    ("STATUS", "status"),
    ("STAGE", "stage"),
    ("BY", "created_by"),
    ("REASON", "reason"),
]
TARGET_COLUMNS = [
    ("TENANT", "tenant_id"),
    ("STAGE", "stage"),
    ("POS", "position"),
    ("STATUS", "status"),
    ("COMMAND", "command_id"),
    ("BEFORE", "previous_version"),
    ("DETAIL", "detail"),
]


def _rollout(r: dict[str, Any]) -> str:
    base = {k: v for k, v in r.items() if k != "stages"}
    stages = table(
        r.get("stages") or [],
        [("#", "index"), ("STAGE", "name"), ("TARGETS", "targets"), ("COUNTS", "counts"), ("SPEC", "spec")],
    )
    return f"{render(base)}\n\nstages:\n{stages}"


@api_command(rollouts, "create")
def create_rollout(
    hub: Hub,
    component: Annotated[str, typer.Option()],
    image: Annotated[str, typer.Option(help="Repository, e.g. registry.letsbe.biz/letsbe/openclaw.")],
    digest: Annotated[str, typer.Option(help="sha256:…")],
    version: Annotated[str, typer.Option()],
    stages: Annotated[str | None, typer.Option(help="The stages as a JSON list; default: seed §7.4's.")] = None,
    soak_scale: Annotated[float | None, typer.Option(help="Multiply the default soak times (0.001: a drill).")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Updates in flight at once (10).")] = None,
    rollback_on_abort: Annotated[bool, typer.Option(help="An abort sends updated tenants back.")] = False,
) -> None:
    """Roll a component to an image digest across the fleet, stage by stage (fleet:write)."""
    body: dict[str, Any] = {
        "component": component,
        "image": image,
        "digest": digest,
        "version": version,
        "rollback_on_abort": rollback_on_abort,
    }
    if stages is not None:
        try:
            body["stages"] = json.loads(stages)
        except ValueError as exc:
            raise CliError(f"--stages is not JSON: {exc}", 2) from exc
    elif soak_scale is not None:
        # The hub's default stages (seed §7.4) with their soak times scaled.
        # Imported here: the rollout schemas bring the event contracts, a second of every CLI command's start-up.
        from letsbe_hub.rollouts.schemas import DEFAULT_STAGES

        body["stages"] = [
            s.model_dump(mode="json") | {"soak_seconds": int(s.soak_seconds * soak_scale)} for s in DEFAULT_STAGES
        ]
    if concurrency is not None:
        body["concurrency"] = concurrency
    hub.emit(hub.post("/api/v1/admin/rollouts", body), _rollout)


@api_command(rollouts, "list")
def list_rollouts(
    hub: Hub,
    status: Annotated[
        list[str] | None, typer.Option(help="RUNNING, PAUSED, AWAITING_APPROVAL, COMPLETED or ABORTED; repeat.")
    ] = None,
    component: Annotated[str | None, typer.Option(help="Only this component's.")] = None,
    limit: Limit = None,
    cursor: CursorOpt = None,
    all_pages: AllPages = False,
) -> None:
    """Rollouts, newest first (fleet:read)."""
    params = {"status": status or [], "component": component}
    show_list(hub, "/api/v1/admin/rollouts", params, ROLLOUT_COLUMNS, limit=limit, cursor=cursor, all_pages=all_pages)


@api_command(rollouts, "show")
def show_rollout(hub: Hub, rollout_id: RolloutId) -> None:
    """One rollout with its stages and their counts (fleet:read)."""
    hub.emit(hub.get(f"/api/v1/admin/rollouts/{rollout_id}"), _rollout)


@api_command(rollouts, "targets")
def rollout_targets(
    hub: Hub,
    rollout_id: RolloutId,
    stage: Annotated[int | None, typer.Option(min=0, help="Only this stage's tenants (0 is the first).")] = None,
    limit: Limit = None,
    cursor: CursorOpt = None,
    all_pages: AllPages = False,
) -> None:
    """Per-tenant status, stage by stage: position, command, what it ran before (fleet:read)."""
    path = f"/api/v1/admin/rollouts/{rollout_id}/targets"
    show_list(hub, path, {"stage": stage}, TARGET_COLUMNS, limit=limit, cursor=cursor, all_pages=all_pages)


def _rollout_action(hub: Hub, rollout_id: str, action: str, body: Any = None) -> None:
    answer = hub.post(f"/api/v1/admin/rollouts/{rollout_id}/{action}", body)
    hub.emit(answer, lambda r: f"{r['id']}  {r['status']}" + (f"  ({r['reason']})" if r.get("reason") else ""))


@api_command(rollouts, "pause")
def pause(hub: Hub, rollout_id: RolloutId) -> None:
    """Pause a running rollout (fleet:write)."""
    _rollout_action(hub, rollout_id, "pause")


@api_command(rollouts, "resume")
def resume(hub: Hub, rollout_id: RolloutId) -> None:
    """Resume a paused rollout (fleet:write)."""
    _rollout_action(hub, rollout_id, "resume")


@api_command(rollouts, "approve")
def approve_rollout(hub: Hub, rollout_id: RolloutId) -> None:
    """Start the stage that waits for a person (AWAITING_APPROVAL only; fleet:write)."""
    _rollout_action(hub, rollout_id, "approve")


@api_command(rollouts, "abort")
def abort(
    hub: Hub,
    rollout_id: RolloutId,
    reason: Annotated[str, typer.Option(help="Why.")] = "aborted by an operator",
    rollback: Annotated[
        bool | None,
        typer.Option("--rollback/--no-rollback", help="Send updated tenants back (default: the rollout's setting)."),
    ] = None,
) -> None:
    """Stop: queued updates are cancelled; with --rollback the stage's updated tenants go back (fleet:write)."""
    _rollout_action(hub, rollout_id, "abort", {"reason": reason} | ({} if rollback is None else {"rollback": rollback}))


@api_command(rollouts, "watch")
def watch_rollout(hub: Hub, rollout_id: RolloutId) -> None:
    """Follow a rollout live: its events so far, then each new one (fleet:read).

    Exits 0 once it is COMPLETED and 2 once it is ABORTED (at once for a finished one); --json prints one event
    per line, with a fresh snapshot of the rollout after each batch.
    """

    async def on_event(event: str, event_id: str | None, data: dict[str, Any]) -> int | None:
        if hub.as_json:
            typer.echo(json.dumps({"event": event, "id": event_id, **data}))
        elif event == "rollout-event":
            typer.echo(f"[{data['at'][11:19]}] {data['kind']}: {data['message']}")
        elif event == "rollout":
            typer.echo(
                f"  -> {data['status']}  stage {data['stage'] or '-'}"
                + (f"  ({data['reason']})" if data.get("reason") else "")
            )
        if event == "end":
            return 0 if data.get("status") == "COMPLETED" else 2
        return None

    raise typer.Exit(asyncio.run(follow(hub, f"/api/v1/admin/rollouts/{rollout_id}/events", on_event)))


# --- approvals ------------------------------------------------------------------------------------------------------

APPROVAL_COLUMNS = [
    ("ID", "id"),
    ("TENANT", "tenant_id"),
    ("TOOL", "tool"),
    ("ACTION", "action"),
    ("RISK", "risk_class"),
    ("STATUS", "status"),
    ("REQUESTED", "requested_at"),
    ("DECIDED_BY", "decided_by"),
]


@api_command(approvals, "list")
def list_approvals(
    hub: Hub,
    status: Annotated[
        list[str] | None, typer.Option(help="PENDING, APPROVED, REJECTED, EXPIRED or CONSUMED; repeat.")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's.")] = None,
    limit: Limit = None,
    cursor: CursorOpt = None,
    all_pages: AllPages = False,
) -> None:
    """Approvals, newest first (fleet:read)."""
    params = {"status": status or [], "tenant_id": tenant}
    path = "/api/v1/admin/approvals"
    show_list(hub, path, params, APPROVAL_COLUMNS, limit=limit, cursor=cursor, all_pages=all_pages)


@api_command(approvals, "show")
def show_approval(hub: Hub, approval_id: Annotated[str, typer.Argument()]) -> None:
    """One approval (fleet:read)."""
    hub.emit(hub.get(f"/api/v1/admin/approvals/{approval_id}"))


def _decide(hub: Hub, approval_id: str, decision: str, note: str | None) -> None:
    body = {"decision": decision} | ({"note": note} if note else {})
    answer = hub.post(f"/api/v1/admin/approvals/{approval_id}/decision", body)
    hub.emit(answer, lambda a: f"{a['id']}  {a['status']}  (by {a['decided_by']})")


@api_command(approvals, "approve")
def approve(
    hub: Hub, approval_id: Annotated[str, typer.Argument()], note: Annotated[str | None, typer.Option()] = None
) -> None:
    """Approve a pending tool call (fleet:write)."""
    _decide(hub, approval_id, "approve", note)


@api_command(approvals, "reject")
def reject(
    hub: Hub, approval_id: Annotated[str, typer.Argument()], note: Annotated[str | None, typer.Option()] = None
) -> None:
    """Reject a pending tool call (fleet:write)."""
    _decide(hub, approval_id, "reject", note)
