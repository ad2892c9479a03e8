"""The operators' web console at /console/: server-rendered pages over the same service functions the admin API
calls, with the operator's account scopes as the API token's (a page or action needs the scope its API route needs)
and ``operator:<name>`` as the actor everywhere history records one."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError
from sse_starlette import EventSourceResponse

from letsbe_contracts import Provider, Region, Tier
from letsbe_contracts.approvals import ApprovalStatus
from letsbe_contracts.enums import OrderStatus
from letsbe_contracts.events import DomainSuffix
from letsbe_hub.alerts import health
from letsbe_hub.alerts import repository as alerts_repo
from letsbe_hub.alerts import service as alerts
from letsbe_hub.alerts.schemas import AcknowledgeRequest, Alert, SilenceRequest
from letsbe_hub.approvals import repository as approvals_repo
from letsbe_hub.approvals import service as approvals
from letsbe_hub.approvals.endpoints import ApprovalDecision
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.commands import repository as commands_repo
from letsbe_hub.commands import service as commands
from letsbe_hub.commands.schemas import CommandCreate
from letsbe_hub.console import dns, queries
from letsbe_hub.console.auth import (
    ConsoleRoute,
    Operator,
    form_of,
    render,
    require,
    sign_in_page,
    sign_in_submit,
    sign_out,
)
from letsbe_hub.lifecycle.tenants import decommission
from letsbe_hub.orders import repository as orders_repo
from letsbe_hub.orders import service as orders
from letsbe_hub.orders.schemas import OrderCancel, OrderRetry, TransitionOut
from letsbe_hub.orders.stream import order_events
from letsbe_hub.orders.wiring import OrdersRuntimeDep
from letsbe_hub.rollouts import repository as rollouts_repo
from letsbe_hub.rollouts import service as rollouts
from letsbe_hub.rollouts.endpoints import rollout_events
from letsbe_hub.rollouts.schemas import DEFAULT_STAGES, RolloutAbort, RolloutCreate, StageSpec
from letsbe_hub.servers import costs, migrations, pools
from letsbe_hub.servers import endpoints as servers_api
from letsbe_hub.servers import repository as servers_repo
from letsbe_hub.servers import service as servers
from letsbe_hub.servers.models import AllocationHold, HoldStatus, InventoryStatus
from letsbe_hub.servers.schemas import AssignServer, PoolUpdate, ServerCreate
from letsbe_hub.tenants import repository as tenants_repo
from letsbe_hub.tenants import service as tenants
from letsbe_hub.tenants.schemas import TenantDecommission
from letsbe_platform.errors import Conflict, NotFound, Unprocessable
from letsbe_platform.pagination import DEFAULT_LIMIT, Cursor
from letsbe_platform.web import After, LastEventId, RuntimeDep, SessionDep, sse_cursor

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
router.add_api_route("/sign-in", sign_in_page, methods=["GET"], name="console.sign_in")
router.add_api_route("/sign-in", sign_in_submit, methods=["POST"], name="console.sign_in_submit")
router.add_api_route("/sign-out", sign_out, methods=["POST"], name="console.sign_out")

PAGE = DEFAULT_LIMIT
LOG_ROWS = 2000  # rows of the provisioning log drawn with the page; the stream carries on after the last


def _see(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _parse(model: type, data: dict[str, Any]) -> Any:
    """A form as the API's request model: the same validation, a 422 page with the same messages."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'form'}: {e['msg']}" for e in exc.errors()[:5])
        raise Unprocessable(errors) from None


# --- overview --------------------------------------------------------------------------------------------------------


@router.get("/", name="console.overview")
async def overview(request: Request, session: SessionDep, rt: RuntimeDep, op: Operator) -> Response:
    settings = request.app.state.settings
    return render(request, "console/overview.html", op, nav="overview", title="Overview",
                        health=await health.summary(rt, session),
                        orders=await queries.orders_by_status(session) if Scope.ORDERS_READ in op.scopes else {},
                        provisioning=await queries.provisioning(session) if Scope.ORDERS_READ in op.scopes else [],
                        pools=await pools.pool_views(session) if Scope.SERVERS_READ in op.scopes else [],
                        alerts=await alerts_repo.open_by_severity(session),
                        freshness=await queries.heartbeat_freshness(session, settings.heartbeat_interval_seconds))


# --- orders ----------------------------------------------------------------------------------------------------------

_suffix = TypeAdapter(DomainSuffix)


@router.get("/orders", name="console.orders")
async def order_list(
    request: Request, session: SessionDep, op: Operator,
    q: Annotated[str | None, Query(max_length=320)] = None,
    status: OrderStatus | None = Query(default=None),
    cursor: Cursor = None,
) -> Response:
    require(op, Scope.ORDERS_READ)
    q = (q or "").strip()
    filters: dict[str, Any] = {"status": [status.value] if status else []}
    message = None
    if q:
        try:
            order_id = uuid.UUID(q)
        except ValueError:
            order_id = None
        if order_id is not None:
            return _see(f"/console/orders/{order_id}")
        if "@" in q:
            filters["customer_email"] = q
        else:
            try:
                filters["domain_suffix"] = _suffix.validate_python(q)
            except ValidationError:
                message = "Search for a domain (example.com finds its subdomains too), an email or an order id."
    rows, next_cursor = ([], None) if message else await orders_repo.list_orders(
        session, orders_repo.OrderFilters(**filters), limit=PAGE, cursor=cursor)
    params = {k: v for k, v in {"q": q, "status": status.value if status else ""}.items() if v}
    return render(request, "console/orders.html", op, nav="orders", title="Orders", items=rows,
                        next_cursor=next_cursor, params=params, q=q, status_filter=status.value if status else "",
                        statuses=[s.value for s in OrderStatus], message=message)


@router.get("/orders/{order_id}", name="console.order")
async def order_page(request: Request, order_id: uuid.UUID, session: SessionDep, op: Operator) -> Response:
    require(op, Scope.ORDERS_READ)
    order = await orders_repo.get(session, order_id)
    if order is None:
        raise NotFound("No order with that id.")
    rows = await orders_repo.stream_rows(session, order_id, 0, LOG_ROWS)
    hold = await session.get(AllocationHold, order_id)
    return render(request, "console/order.html", op, nav="orders", title=order.domain, order=order,
                        history=[TransitionOut.model_validate(t) for t in await orders_repo.history(session, order_id)],
                        rows=rows, last_id=rows[-1].id if rows else 0, hold=hold,
                        can_write=Scope.ORDERS_WRITE in op.scopes)


@router.get("/orders/{order_id}/events", name="console.order_events")
async def order_stream(
    order_id: uuid.UUID, session: SessionDep, rt: OrdersRuntimeDep, op: Operator,
    last_event_id: LastEventId = None, after: After | None = None,
) -> EventSourceResponse:
    """The API's order stream (history after the cursor, then live), for the page's EventSource."""
    require(op, Scope.ORDERS_READ)
    if await orders_repo.status_of(session, order_id) is None:
        raise NotFound("No order with that id.")
    stream = order_events(rt.sessions, rt.listener, order_id, after_id=sse_cursor(last_event_id, after))
    return EventSourceResponse(stream, ping=rt.settings.sse_ping_seconds, headers={"X-Accel-Buffering": "no"})


@router.post("/orders/{order_id}/{action}", name="console.order_action")
async def order_action(request: Request, order_id: uuid.UUID, action: str, session: SessionDep,
                       op: Operator) -> Response:
    require(op, Scope.ORDERS_WRITE if action != "assign" else Scope.SERVERS_WRITE)
    form = await form_of(request)
    if action == "cancel":
        body = _parse(OrderCancel, {"reason": form.get("reason") or "cancelled by an operator"})
        await orders.cancel(session, order_id, actor=op.actor, reason=body.reason)
    elif action == "retry":
        body = _parse(OrderRetry, {"force": form.get("force") == "true", "reason": form.get("reason") or None})
        await orders.retry(session, order_id, actor=op.actor, force=body.force, note=body.reason)
    elif action == "release":
        await orders.release(session, order_id, actor=op.actor)
    elif action == "assign":
        body = _parse(AssignServer, {"server_id": form.get("server_id") or None})
        await servers.assign_held(session, order_id, body.server_id, by=op.actor)
    else:
        raise NotFound("No such order action.")
    return _see(f"/console/orders/{order_id}")


# --- alerts ----------------------------------------------------------------------------------------------------------

BADGE_SECONDS = 3.0
ALERT_VIEWS = ("open", "acknowledged", "silenced", "resolved", "all")


@router.get("/alerts", name="console.alerts")
async def alert_list(
    request: Request, session: SessionDep, op: Operator,
    view: str = Query(default="open", pattern="^(" + "|".join(ALERT_VIEWS) + ")$"),
    severity: Annotated[str | None, Query(pattern="^(soft|medium|hard)$")] = None,
    cursor: Cursor = None,
) -> Response:
    require(op, Scope.ALERTS_READ)
    rows, next_cursor = await queries.alerts(session, view, severity=severity, limit=PAGE, cursor=cursor)
    open_counts = await alerts_repo.open_by_severity(session)
    params = {k: v for k, v in {"view": view, "severity": severity or ""}.items() if v}
    return render(request, "console/alerts.html", op, nav="alerts", title="Alerts",
                        items=[Alert.model_validate(r) for r in rows], next_cursor=next_cursor, params=params,
                        view=view, soft=open_counts.get("soft", 0), now=datetime.now(UTC),
                        can_write=Scope.ALERTS_WRITE in op.scopes)


@router.get("/alerts/badge", name="console.alert_badge")
async def alert_badge(request: Request, op: Operator) -> EventSourceResponse:
    """Open alerts nobody acknowledged, by severity: pushed when the count changes (the header's live badge)."""
    require(op, Scope.ALERTS_READ)
    sessions = request.app.state.runtime.sessions

    async def stream():
        last = None
        while True:
            async with sessions() as session:
                counts = await queries.unacknowledged_by_severity(session)
            if counts != last:
                last = counts
                yield {"event": "badge", "data": json.dumps({"open": sum(counts.values()), **counts})}
            await asyncio.sleep(BADGE_SECONDS)

    return EventSourceResponse(stream(), ping=15)


@router.post("/alerts/{alert_id}/{action}", name="console.alert_action")
async def alert_action(request: Request, alert_id: uuid.UUID, action: str, session: SessionDep,
                       op: Operator) -> Response:
    require(op, Scope.ALERTS_WRITE)
    form = await form_of(request)
    if action == "acknowledge":
        body = _parse(AcknowledgeRequest, {"note": form.get("note") or None})
        await alerts.acknowledge(session, alert_id, op.actor, body.note)
    elif action == "silence":
        try:
            hours = float(form.get("hours", ""))
        except ValueError:
            raise Unprocessable("hours: a number of hours") from None
        until = datetime.now(UTC) + timedelta(hours=hours)
        body = _parse(SilenceRequest, {"until": until, "note": form.get("reason") or None})
        await alerts.silence(session, alert_id, body.until, op.actor, body.note)
    elif action == "unsilence":
        await alerts.silence(session, alert_id, None, op.actor)
    else:
        raise NotFound("No such alert action.")
    return _see(f"/console/alerts#alert-{alert_id}")


# --- approvals -------------------------------------------------------------------------------------------------------


@router.get("/approvals", name="console.approvals")
async def approval_list(
    request: Request, session: SessionDep, op: Operator,
    status: ApprovalStatus = ApprovalStatus.PENDING, cursor: Cursor = None,
) -> Response:
    require(op, Scope.FLEET_READ)
    await approvals_repo.expire_due(session)
    rows, next_cursor = await approvals_repo.listing(session, status=[status.value], tenant_id=None, limit=PAGE,
                                                     cursor=cursor)
    return render(request, "console/approvals.html", op, nav="approvals", title="Approvals",
                        items=[approvals.view(r) for r in rows], next_cursor=next_cursor,
                        params={"status": status.value}, status_filter=status.value,
                        can_write=Scope.FLEET_WRITE in op.scopes)


@router.post("/approvals/{approval_id}/decision", name="console.approval_decide")
async def approval_decide(request: Request, approval_id: uuid.UUID, session: SessionDep, op: Operator) -> Response:
    require(op, Scope.FLEET_WRITE)
    form = await form_of(request)
    body = _parse(ApprovalDecision, {"decision": form.get("decision"), "note": form.get("note") or None})
    await approvals.decide(session, approval_id, body.decision == "approve", op.actor, body.note)
    return _see("/console/approvals")


# --- rollouts --------------------------------------------------------------------------------------------------------


def _stage_lines(stages: list[StageSpec]) -> str:
    lines = []
    for s in stages:
        share = "staging" if s.staging else f"{s.percent:g}"
        lines.append(f"{s.name} {share} {s.soak_seconds}" + (" approval" if s.requires_approval else ""))
    return "\n".join(lines)


def _parse_stages(text: str) -> list[dict[str, Any]]:
    """``name percent|staging soak-seconds [approval] [max-failure-ratio]`` per line, as the API's stages."""
    stages = []
    for n, raw in enumerate(text.strip().splitlines(), 1):
        parts = raw.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise Unprocessable(f"stages line {n}: give name, percent (or 'staging') and soak seconds")
        name, share, soak, *rest = parts
        try:
            stage: dict[str, Any] = {"name": name, "soak_seconds": int(soak), "requires_approval": "approval" in rest}
            stage.update({"staging": True} if share == "staging" else {"percent": float(share.rstrip("%"))})
            ratios = [r for r in rest if r != "approval"]
            if ratios:
                stage["max_failure_ratio"] = float(ratios[0])
        except ValueError:
            raise Unprocessable(f"stages line {n}: percent, soak seconds and failure ratio are numbers") from None
        stages.append(stage)
    return stages


@router.get("/rollouts", name="console.rollouts")
async def rollout_list(request: Request, session: SessionDep, op: Operator, cursor: Cursor = None) -> Response:
    return await _rollouts_page(request, session, op, cursor)


async def _rollouts_page(request: Request, session: SessionDep, op: Operator, cursor: str | None,
                         message: str | None = None, form: dict[str, Any] | None = None) -> Response:
    """The list, and the start form (filled in again, with what is wrong, after a refused start)."""
    require(op, Scope.FLEET_READ)
    rows, next_cursor = await rollouts_repo.list_rollouts(session, status=(), component=None, limit=PAGE,
                                                          cursor=cursor)
    return render(request, "console/rollouts.html", op, nav="rollouts", title="Rollouts",
                        items=[await rollouts.view(session, r.id) for r in rows], next_cursor=next_cursor, params={},
                        can_write=Scope.FLEET_WRITE in op.scopes, 
                        default_stages=_stage_lines(DEFAULT_STAGES), message=message, form=form or {},
                        status_code=422 if message else 200)


@router.post("/rollouts", name="console.rollout_start")
async def rollout_start(request: Request, session: SessionDep, op: Operator) -> Response:
    require(op, Scope.FLEET_WRITE)
    form = await form_of(request)
    try:
        body = _parse(RolloutCreate, {
            "component": form.get("component"), "image": form.get("image"), "digest": form.get("digest"),
            "version": form.get("version"), "stages": _parse_stages(form.get("stages", "")),
            "concurrency": form.get("concurrency") or 10, "rollback_on_abort": form.get("rollback_on_abort") == "true",
        })
        view = await rollouts.create(session, body, actor=op.actor)
    except (Unprocessable, Conflict) as exc:  # the form again, filled in, with what is wrong (create wrote nothing)
        return await _rollouts_page(request, session, op, None, message=exc.detail, form=form)
    return _see(f"/console/rollouts/{view.id}")


@router.get("/rollouts/{rollout_id}", name="console.rollout")
async def rollout_page(request: Request, rollout_id: uuid.UUID, session: SessionDep, op: Operator) -> Response:
    require(op, Scope.FLEET_READ)
    view = await rollouts.view(session, rollout_id)
    events = await rollouts_repo.events_after(session, rollout_id, 0, limit=1000)
    return render(request, "console/rollout.html", op, nav="rollouts", title=f"Rollout {view.component}",
                        r=view, events=events, last_id=events[-1].id if events else 0,
                        can_write=Scope.FLEET_WRITE in op.scopes)


@router.get("/rollouts/{rollout_id}/events", name="console.rollout_events")
async def rollout_stream(request: Request, rollout_id: uuid.UUID, session: SessionDep, op: Operator,
                         last_event_id: LastEventId = None, after: After = 0) -> EventSourceResponse:
    require(op, Scope.FLEET_READ)
    await rollouts.view(session, rollout_id)  # 404 before the stream starts
    sessions = request.app.state.runtime.sessions
    return EventSourceResponse(rollout_events(sessions, rollout_id, sse_cursor(last_event_id, after)), ping=15)


@router.post("/rollouts/{rollout_id}/{action}", name="console.rollout_action")
async def rollout_action(request: Request, rollout_id: uuid.UUID, action: str, session: SessionDep,
                         op: Operator) -> Response:
    require(op, Scope.FLEET_WRITE)
    form = await form_of(request)
    if action == "pause":
        await rollouts.pause(session, rollout_id, actor=op.actor)
    elif action == "resume":
        await rollouts.resume(session, rollout_id, actor=op.actor)
    elif action == "approve":
        await rollouts.approve(session, rollout_id, actor=op.actor)
    elif action == "abort":
        rollback = {"true": True, "false": False}.get(form.get("rollback", ""))
        body = _parse(RolloutAbort, {"reason": form.get("reason") or "aborted by an operator", "rollback": rollback})
        await rollouts.abort(session, rollout_id, body, actor=op.actor)
    else:
        raise NotFound("No such rollout action.")
    return _see(f"/console/rollouts/{rollout_id}")


# --- fleet -----------------------------------------------------------------------------------------------------------


def _age(at: datetime | None) -> str:
    if at is None:
        return "never"
    seconds = max(0, int((datetime.now(UTC) - at).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, step in (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2)):
        if n >= step:
            return f"{n / step:.1f} {unit}"
    return f"{n} B"


@router.get("/tenants", name="console.tenants")
async def tenant_list(
    request: Request, session: SessionDep, op: Operator,
    domain: Annotated[str | None, Query(max_length=253)] = None, cursor: Cursor = None,
) -> Response:
    require(op, Scope.FLEET_READ)
    message, suffix = None, None
    if domain and domain.strip():
        try:
            suffix = _suffix.validate_python(domain.strip())
        except ValidationError:
            message = "Give a domain, e.g. example.com (its subdomains are found too)."
    page = None if message else await tenants.list_tenants(
        session, tenants_repo.TenantFilters(domain_suffix=suffix), limit=PAGE, cursor=cursor)
    items = page.items if page else []
    return render(request, "console/tenants.html", op, nav="fleet", title="Fleet", items=items,
                  facts=await queries.fleet_facts(session, [t.tenant_id for t in items]),
                  allowance={t.value: n for t, n in request.app.state.settings.tier_monthly_tokens.items()},
                  next_cursor=page.next_cursor if page else None, params={"domain": domain} if domain else {},
                  domain=domain, message=message, age=_age, size=_size)


@router.get("/tenants/{tenant_id}", name="console.tenant")
async def tenant_page(request: Request, tenant_id: uuid.UUID, session: SessionDep, op: Operator) -> Response:
    require(op, Scope.FLEET_READ)
    view = await tenants.tenant_view(session, tenant_id)
    commands_page, _ = await commands_repo.list_for_tenant(session, tenant_id, status=[], limit=20, cursor=None)
    alert_rows, _ = await alerts_repo.list_alerts(session, status=None, severity=[], tenant_id=tenant_id, rule=None,
                                                  limit=20, cursor=None)
    dns_records = await dns.tenant_records(request.app.state.settings, tenant_id)
    facts = (await queries.fleet_facts(session, [tenant_id]))[tenant_id]
    allowance = request.app.state.settings.tier_monthly_tokens.get(view.tier, 0)  # StrEnum keys: the value finds it
    return render(request, "console/tenant.html", op, nav="fleet", title=view.domain, t=view, dns=dns_records,
                  f=facts, allowance=allowance, size=_size, commands=[commands.view(c) for c in commands_page],
                  alerts=[Alert.model_validate(a) for a in alert_rows], age=_age,
                  command_types=sorted(set(commands.PARAMS) - {"update"}),  # updates go through rollouts
                  can_write=Scope.FLEET_WRITE in op.scopes)


@router.post("/tenants/{tenant_id}/decommission", name="console.tenant_decommission")
async def tenant_decommission(request: Request, tenant_id: uuid.UUID, session: SessionDep, op: Operator) -> Response:
    require(op, Scope.FLEET_WRITE)
    form = await form_of(request)
    view = await tenants.tenant_view(session, tenant_id)
    if form.get("confirm", "").strip().lower() != view.domain:
        raise Unprocessable(f"Type the tenant's domain ({view.domain}) to confirm.")
    body = _parse(TenantDecommission, {"reason": f"{form.get('reason') or 'decommissioned'} ({op.actor})"})
    window = timedelta(hours=request.app.state.settings.decommission_export_window_hours)
    await decommission(session, tenant_id, body.reason, actor=op.actor, export_window=window)
    return _see(f"/console/tenants/{tenant_id}")


@router.post("/tenants/{tenant_id}/agents/{agent_id}/revoke", name="console.agent_revoke")
async def agent_revoke(request: Request, tenant_id: uuid.UUID, agent_id: uuid.UUID, session: SessionDep,
                       op: Operator) -> Response:
    require(op, Scope.FLEET_WRITE)
    await form_of(request)
    if not await tenants.revoke_agent(session, tenant_id, agent_id):
        raise NotFound("No active agent with that id on this tenant.")
    return _see(f"/console/tenants/{tenant_id}")


@router.post("/tenants/{tenant_id}/commands", name="console.command_send")
async def command_send(request: Request, tenant_id: uuid.UUID, session: SessionDep, op: Operator) -> Response:
    require(op, Scope.FLEET_WRITE)
    form = await form_of(request)
    try:
        params = json.loads(form.get("params") or "{}")
    except ValueError:
        raise Unprocessable("params: not JSON") from None
    body = _parse(CommandCreate, {"type": form.get("type"), "params": params})
    await tenants.tenant_view(session, tenant_id)  # 404 for an unknown tenant
    await commands.enqueue(session, tenant_id=tenant_id, command_type=body.type, params=body.params,
                           actor=op.actor, agent=body.agent, expires_in=timedelta(seconds=body.expires_in_seconds),
                           deadline_seconds=body.deadline_seconds)
    return _see(f"/console/tenants/{tenant_id}")


# --- pool and servers ------------------------------------------------------------------------------------------------


SERVER_FIELDS = ("provider", "provider_ref", "name", "tier", "region", "ipv4", "ipv6", "ssh_port", "ssh_user",
                 "host_key_fingerprint", "contract_end")


@router.get("/servers", name="console.servers")
async def server_list(
    request: Request, session: SessionDep, op: Operator,
    status: InventoryStatus | None = Query(default=None), cursor: Cursor = None,
) -> Response:
    return await _servers_page(request, session, op, status, cursor)


async def _servers_page(request: Request, session: SessionDep, op: Operator, status: InventoryStatus | None,
                        cursor: str | None, message: str | None = None, form: dict[str, Any] | None = None,
                        status_code: int = 200) -> Response:
    """Pools against their minimum, held orders, servers by state, and the register form (filled in again, with
    what is wrong, after a refused registration)."""
    require(op, Scope.SERVERS_READ)
    rows, next_cursor = await servers_repo.list_servers(session, status=[status.value] if status else [], tier=None,
                                                        region=None, provider=None, limit=PAGE, cursor=cursor)
    held, _ = await servers_repo.list_holds(session, HoldStatus.HELD.value, limit=PAGE, cursor=None)
    return render(request, "console/servers.html", op, nav="servers", title="Servers",
                  pools=await pools.pool_views(session), held=[servers.hold_out(h) for h in held],
                  items=[servers.to_out(s) for s in rows], next_cursor=next_cursor,
                  params={"status": status.value} if status else {}, status_filter=status.value if status else "",
                  statuses=[s.value for s in InventoryStatus], tiers=[t.value for t in Tier],
                  regions=[r.value for r in Region], providers=[p.value for p in Provider],
                  can_write=Scope.SERVERS_WRITE in op.scopes, message=message, form=form or {},
                  status_code=status_code)


@router.post("/servers", name="console.server_register")
async def server_register(request: Request, session: SessionDep, op: Operator) -> Response:
    """Register a pool server; without a fingerprint the hub reads the host key from the server now (pinned)."""
    require(op, Scope.SERVERS_WRITE)
    form = await form_of(request)
    try:
        body = _parse(ServerCreate, {k: v.strip() for k in SERVER_FIELDS if (v := form.get(k, "")).strip()})
        server = await servers.register_server(session, body, by=op.actor)
    except (Unprocessable, Conflict) as exc:  # the form again, filled in, with what is wrong (nothing registered)
        return await _servers_page(request, session, op, None, None, message=exc.detail, form=form,
                                   status_code=exc.status_code)
    return _see(f"/console/servers/{server.id}?registered=1")


class PoolForm(PoolUpdate):
    """The API's pool update, with the pool it is for (the form names it; the API's path does)."""

    tier: Tier
    region: Region


@router.post("/servers/pools", name="console.pool_set")
async def pool_set(request: Request, session: SessionDep, op: Operator) -> Response:
    require(op, Scope.SERVERS_WRITE)
    form = await form_of(request)
    body = _parse(PoolForm, {k: form.get(k) for k in ("tier", "region", "min_available", "target_available")})
    await pools.set_pool(session, body.tier, body.region, body.min_available, body.target_available, by=op.actor)
    return _see("/console/servers")


@router.get("/servers/costs", name="console.server_costs")
async def server_costs(request: Request, session: SessionDep, op: Operator, cursor: Cursor = None) -> Response:
    """The inventory's monthly cost, and the Hetzner → Netcup migrations proposed (newest first)."""
    require(op, Scope.SERVERS_READ)
    rows, next_cursor = await servers_repo.list_proposals(session, None, limit=PAGE, cursor=cursor)
    return render(request, "console/costs.html", op, nav="servers", title="Costs and migrations",
                  costs=await costs.cost_view(session), proposals=[servers_api.proposal_out(p) for p in rows],
                  next_cursor=next_cursor, params={}, period=migrations.period_of_now(),
                  can_write=Scope.SERVERS_WRITE in op.scopes)


@router.post("/servers/migrations/check", name="console.migration_check")
async def migration_check(request: Request, session: SessionDep, op: Operator) -> Response:
    require(op, Scope.SERVERS_WRITE)
    await form_of(request)
    await migrations.propose_migrations(session)
    return _see("/console/servers/costs#migrations")


@router.get("/servers/{server_id}", name="console.server")
async def server_page(request: Request, server_id: uuid.UUID, session: SessionDep, op: Operator,
                      registered: bool = False) -> Response:
    require(op, Scope.SERVERS_READ)
    server = servers.to_out(await servers.get_server(session, server_id))
    return render(request, "console/server.html", op, nav="servers", title=server.name, s=server,
                  registered=registered, can_write=Scope.SERVERS_WRITE in op.scopes)


@router.post("/servers/{server_id}/retire", name="console.server_retire")
async def server_retire(request: Request, server_id: uuid.UUID, session: SessionDep, op: Operator) -> Response:
    """Typed confirmation: the server's name. IN_USE servers go DRAINING first (the service's rule)."""
    require(op, Scope.SERVERS_WRITE)
    form = await form_of(request)
    server = await servers.get_server(session, server_id)
    if form.get("confirm", "").strip() != server.name:
        raise Unprocessable(f"Type the server's name ({server.name}) to confirm.")
    await servers_api.retire_server(request, session, server_id, by=op.actor)
    return _see(f"/console/servers/{server_id}")
