"""The alert lifecycle: observations in; open / refresh / resolve alerts, stage events and notifications out.

Rules (alerts/rules.py, the sweep, the TLS checker, token usage) only say what they observe about a (tenant, rule):
firing, clear, or in the hysteresis band (hold). This module is the one place that turns that into alerts:

- one open alert per (tenant, rule): a repeat observation bumps ``last_seen`` and ``count`` (consecutive failing
  observations) instead of opening another;
- it resolves itself once the rule has been clear ``clear_after`` times in a row, with a resolved notice to every
  channel that heard about it (and notices not yet sent are cancelled instead);
- alert-raised / alert-resolved go through the outbox in the same transaction; alert-raised is re-staged with the
  new ``last_seen``/``count`` at most every ``refresh_seconds`` so the hub's view stays current without one event
  per heartbeat;
- notifications are rows (notify/models.py) routed per §9.2 (notify/routing.py) and sent by a separate worker, so
  a slow SMTP server never holds up rule evaluation.

Every caller holds the lock of the tenant row (or the sweep's advisory lock for platform alerts) while it applies,
so two workers never race on the same (tenant, rule).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts import AlertRaisedV1, AlertResolvedV1, AlertSeverity, Event
from letsbe_monitor.alerts import repository as repo
from letsbe_monitor.alerts.models import Alert
from letsbe_monitor.clock import Clock, utcnow
from letsbe_monitor.config import MonitorSettings
from letsbe_monitor.metrics import ALERTS_RAISED, ALERTS_RESOLVED
from letsbe_monitor.notify.models import ESCALATED, RAISED, RESOLVED
from letsbe_monitor.notify.routing import STAFF_CHANNELS, available_channels, channels_on_count, channels_on_raise
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

EVENT_NS = uuid.UUID("6f3c8a52-2b1e-4f43-9d55-3c0a0e6b7a11")


@dataclass(frozen=True)
class Observation:
    """What a rule saw for one (tenant, rule). ``firing``: True fire, False clear, None hold (in the band)."""

    tenant_id: uuid.UUID | None
    rule: str
    firing: bool | None
    summary: str
    value: float | None = None
    threshold: float | None = None
    severity: AlertSeverity | None = None  # default: the rule's configured severity
    auto_resolve_at: datetime | None = None  # e.g. a token-pool alert ends with its billing period


@dataclass
class Applied:
    raised: list[Alert] = field(default_factory=list)
    refreshed: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)


def _correlation(tenant_id: uuid.UUID | None) -> str:
    # tenant_id == order_id: alerts of a tenant correlate with its order's events.
    return str(tenant_id) if tenant_id is not None else "platform"


def raised_event(alert: Alert) -> tuple[Event, uuid.UUID, str]:
    event = AlertRaisedV1(
        alert_id=alert.id,
        tenant_id=alert.tenant_id,
        rule=alert.rule,
        severity=AlertSeverity(alert.severity),
        summary=alert.summary[:2000],
        value=alert.value,
        threshold=alert.threshold,
        first_seen=alert.first_seen,
        last_seen=alert.last_seen,
        count=alert.count,
    )
    # Deterministic: re-applying the same observation stages the same event once.
    return event, uuid.uuid5(EVENT_NS, f"{alert.id}:raised:{alert.count}"), _correlation(alert.tenant_id)


def resolved_event(alert: Alert) -> tuple[Event, uuid.UUID, str]:
    assert alert.resolved_at is not None
    event = AlertResolvedV1(
        alert_id=alert.id,
        tenant_id=alert.tenant_id,
        rule=alert.rule,
        resolved_at=alert.resolved_at,
        summary=(alert.resolved_summary or "resolved")[:2000],
    )
    return event, uuid.uuid5(EVENT_NS, f"{alert.id}:resolved"), _correlation(alert.tenant_id)


class AlertEngine:
    def __init__(self, settings: MonitorSettings):
        self.settings = settings
        self.channels = available_channels(settings)

    async def apply(self, session: AsyncSession, observations: Sequence[Observation], now: datetime) -> Applied:
        applied = Applied()
        obs = [o for o in observations if o.firing is not None and self.settings.rules[o.rule].enabled]
        if not obs:
            return applied
        open_by_key = await repo.open_alerts(session, {(o.tenant_id, o.rule) for o in obs})
        escalated: list[tuple[Alert, list[str]]] = []
        for o in obs:
            key = (o.tenant_id, o.rule)
            alert = open_by_key.get(key)
            if o.firing:
                if alert is None:
                    alert = self._open(o, now)
                    open_by_key[key] = alert
                    session.add(alert)
                    applied.raised.append(alert)
                    continue
                alert.last_seen = now
                alert.count += 1
                alert.clear_streak = 0
                alert.summary, alert.value, alert.threshold = o.summary, o.value, o.threshold
                if o.auto_resolve_at is not None:
                    alert.auto_resolve_at = o.auto_resolve_at
                push = channels_on_count(
                    alert.severity, alert.count, self.settings.medium_push_after, alert.tenant_id, self.channels
                )
                if push:
                    escalated.append((alert, push))
                due = (
                    alert.emitted_at is None
                    or (now - alert.emitted_at).total_seconds() >= self.settings.refresh_seconds
                )
                if due or push:
                    alert.emitted_at = now
                    applied.refreshed.append(alert)
            elif alert is not None:
                alert.clear_streak += 1
                if alert.clear_streak >= self.settings.rules[o.rule].clear_after:
                    self._close(alert, o.summary, now)
                    del open_by_key[key]
                    applied.resolved.append(alert)
        await session.flush()
        await self._announce(session, applied, escalated, now)
        return applied

    async def resolve(self, session: AsyncSession, alerts: Sequence[Alert], summary: str, now: datetime) -> Applied:
        """Resolve alerts directly (a token-pool alert whose billing period ended)."""
        applied = Applied()
        for alert in alerts:
            if alert.resolved_at is None:
                self._close(alert, summary, now)
                applied.resolved.append(alert)
        await session.flush()
        await self._announce(session, applied, [], now)
        return applied

    async def resolve_expired(
        self, session: AsyncSession, now: datetime, tenant_id: uuid.UUID | None = None
    ) -> Applied:
        expired = await repo.expired_alerts(session, now, tenant_id)
        return await self.resolve(session, expired, "The period this alert covered has ended.", now)

    # --- operator actions (from the hub's admin API) ---------------------------------------------------------------

    async def acknowledge(self, session: AsyncSession, alert_id: uuid.UUID, by: str, at: datetime) -> bool:
        """Staff took it in hand: no more staff notifications for this alert (its resolved notice still goes)."""
        alert = await repo.get_alert(session, alert_id, lock=True)
        if alert is None:
            return False
        if alert.acknowledged_at is None:
            alert.acknowledged_at, alert.acknowledged_by = at, by
        await repo.suppress_staff_pending(session, alert_id, STAFF_CHANNELS)
        return True

    async def silence(self, session: AsyncSession, alert_id: uuid.UUID, until: datetime | None, by: str) -> bool:
        """No notifications at all for the alert's (tenant, rule) until ``until`` — later alerts of it included."""
        alert = await repo.get_alert(session, alert_id)
        if alert is None:
            return False
        await repo.set_silence(session, alert.tenant_id, alert.rule, until, by)
        return True

    # --- internals ---------------------------------------------------------------------------------------------

    def _open(self, o: Observation, now: datetime) -> Alert:
        severity = o.severity or self.settings.rules[o.rule].severity
        return Alert(
            id=uuid.uuid4(),
            tenant_id=o.tenant_id,
            rule=o.rule,
            severity=AlertSeverity(severity).value,
            summary=o.summary,
            value=o.value,
            threshold=o.threshold,
            first_seen=now,
            last_seen=now,
            count=1,
            clear_streak=0,
            emitted_at=now,
            auto_resolve_at=o.auto_resolve_at,
        )

    @staticmethod
    def _close(alert: Alert, summary: str, now: datetime) -> None:
        alert.resolved_at = now
        alert.resolved_summary = summary

    async def _announce(
        self, session: AsyncSession, applied: Applied, escalated: list[tuple[Alert, list[str]]], now: datetime
    ) -> None:
        events = [raised_event(a) for a in applied.raised + applied.refreshed]
        events += [resolved_event(a) for a in applied.resolved]
        await repo.stage_events(session, events)

        heard = await repo.settle_deliveries_of_resolved(session, [a.id for a in applied.resolved])
        wanted: list[tuple[Alert, str, str]] = []
        for alert in applied.raised:
            wanted += [(alert, c, RAISED) for c in channels_on_raise(alert.severity, alert.tenant_id, self.channels)]
            # A medium alert whose first observation already is the Nth (push_after == 1) escalates at once.
            wanted += [
                (alert, c, ESCALATED)
                for c in channels_on_count(
                    alert.severity, alert.count, self.settings.medium_push_after, alert.tenant_id, self.channels
                )
            ]
        for alert, channels in escalated:
            wanted += [(alert, c, ESCALATED) for c in channels]
        by_id = {a.id: a for a in applied.resolved}
        wanted += [(by_id[alert_id], channel, RESOLVED) for alert_id, channel in sorted(heard, key=str)]
        if wanted:
            names = await repo.domains(session, [a.tenant_id for a, _, _ in wanted])
            await repo.add_deliveries(
                session,
                [
                    {
                        "id": uuid.uuid4(),
                        "alert_id": alert.id,
                        "tenant_id": alert.tenant_id,
                        "rule": alert.rule,
                        "channel": channel,
                        "kind": kind,
                        "payload": self._payload(alert, kind, names.get(alert.tenant_id) if alert.tenant_id else None),
                        "next_attempt_at": now,  # the engine's clock, not the database's: due at once
                    }
                    for alert, channel, kind in wanted
                ],
            )

        for alert in applied.raised:
            ALERTS_RAISED.labels(alert.rule, alert.severity).inc()
        for alert in applied.resolved:
            ALERTS_RESOLVED.labels(alert.rule).inc()
        if len(applied.raised) + len(applied.resolved) <= 20:
            for alert in applied.raised:
                log.info(
                    "alert raised",
                    alert_id=str(alert.id),
                    tenant_id=str(alert.tenant_id),
                    rule=alert.rule,
                    severity=alert.severity,
                    summary=alert.summary[:300],
                )
            for alert in applied.resolved:
                log.info("alert resolved", alert_id=str(alert.id), tenant_id=str(alert.tenant_id), rule=alert.rule)
        else:
            log.info("alerts changed", raised=len(applied.raised), resolved=len(applied.resolved))

    def _payload(self, alert: Alert, kind: str, domain: str | None) -> dict[str, Any]:
        return {
            "alert_id": str(alert.id),
            "tenant_id": str(alert.tenant_id) if alert.tenant_id else None,
            "domain": domain,
            "rule": alert.rule,
            "severity": alert.severity,
            "kind": kind,
            "summary": alert.resolved_summary if kind == RESOLVED and alert.resolved_summary else alert.summary,
            "value": alert.value,
            "threshold": alert.threshold,
            "first_seen": alert.first_seen.isoformat(),
            "last_seen": alert.last_seen.isoformat(),
            "count": alert.count,
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
            "dashboard_url": self.settings.dashboard_url,
        }


class Judge:
    """What every part of the monitor that judges tenants holds: the database, the alert engine, the settings, and
    the clock (which tests move instead of sleeping)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        engine: AlertEngine,
        settings: MonitorSettings,
        clock: Clock = utcnow,
    ):
        self.sessions = sessions
        self.engine = engine
        self.settings = settings
        self.clock = clock
