"""Admin HTTP of the alerts context: list / get / acknowledge / silence alerts, and the hub health summary."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from letsbe_contracts import AlertSeverity
from letsbe_hub.alerts import health, service
from letsbe_hub.alerts import repository as repo
from letsbe_hub.alerts.schemas import AcknowledgeRequest, Alert, Health, SilenceRequest
from letsbe_hub.auth.dependencies import Authorized
from letsbe_hub.auth.scopes import Scope
from letsbe_platform.errors import NotFound
from letsbe_platform.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from letsbe_platform.web import RuntimeDep, SessionDep

router = APIRouter(prefix="/api/v1/admin", tags=["alerts"])


@router.get("/alerts", name="list")
async def list_alerts(
    session: SessionDep,
    _: Authorized(Scope.ALERTS_READ),
    status: Literal["open", "resolved", "all"] = "open",
    severity: Annotated[list[AlertSeverity] | None, Query(description="Any of these; repeat")] = None,
    tenant_id: uuid.UUID | None = None,
    rule: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_.-]{1,80}$")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Alert]:
    """Newest first (as the hub learned of them), filtered; page with ``next_cursor``."""
    rows, next_cursor = await repo.list_alerts(
        session,
        status=None if status == "all" else status,
        severity=[s.value for s in severity or ()],
        tenant_id=tenant_id,
        rule=rule,
        limit=limit,
        cursor=cursor,
    )
    return Page(items=[Alert.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/alerts/{alert_id}", name="get")
async def get_alert(alert_id: uuid.UUID, session: SessionDep, _: Authorized(Scope.ALERTS_READ)) -> Alert:
    alert = await repo.get(session, alert_id)
    if alert is None:
        raise NotFound("No alert with that id.")
    return Alert.model_validate(alert)


@router.post("/alerts/{alert_id}/acknowledge", name="acknowledge")
async def acknowledge_alert(
    alert_id: uuid.UUID,
    session: SessionDep,
    principal: Authorized(Scope.ALERTS_WRITE),
    body: AcknowledgeRequest | None = None,
) -> Alert:
    """Staff take it in hand: no more staff notifications for it (the customer's, and the resolved notice, go on).
    Acknowledging twice changes nothing; a resolved alert is a 409."""
    alert = await service.acknowledge(session, alert_id, principal.name, body.note if body else None)
    return Alert.model_validate(alert)


@router.post("/alerts/{alert_id}/silence", name="silence")
async def silence_alert(
    alert_id: uuid.UUID, body: SilenceRequest, session: SessionDep, principal: Authorized(Scope.ALERTS_WRITE)
) -> Alert:
    """No notifications at all for this alert's tenant and rule until ``until`` (later alerts of it included)."""
    return Alert.model_validate(await service.silence(session, alert_id, body.until, principal.name, body.note))


@router.delete("/alerts/{alert_id}/silence", name="unsilence")
async def unsilence_alert(alert_id: uuid.UUID, session: SessionDep, principal: Authorized(Scope.ALERTS_WRITE)) -> Alert:
    return Alert.model_validate(await service.silence(session, alert_id, None, principal.name))


@router.get("/health", name="health", tags=["health"])
async def hub_health(session: SessionDep, rt: RuntimeDep, _: Authorized(Scope.ALERTS_READ)) -> Health:
    """The hub's own health in one document (§9.3): pool, outbox backlog, periodic jobs, disk, open alerts."""
    return await health.summary(rt, session)
