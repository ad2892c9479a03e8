"""§9.2 alert routing as data: who hears about an alert of each severity, and when.

| severity | customer                          | staff                              |
|----------|-----------------------------------|------------------------------------|
| soft     | none (auto-recovers)              | dashboard                          |
| medium   | push on the Nth consecutive fail  | email + dashboard                  |
| hard     | push immediately                  | email + Slack/webhook + dashboard  |

The dashboard is the hub (it stores every alert from alert-raised), so it needs no delivery row here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from letsbe_contracts.enums import AlertSeverity
from letsbe_monitor.config import MonitorSettings
from letsbe_monitor.notify.models import EMAIL, PUSH, SLACK, WEBHOOK

STAFF_CHANNELS = frozenset({EMAIL, SLACK, WEBHOOK})


@dataclass(frozen=True)
class Route:
    on_raise: tuple[str, ...]
    push_on_count: bool = False  # customer push once the alert has failed medium_push_after times in a row


ROUTES: dict[AlertSeverity, Route] = {
    AlertSeverity.SOFT: Route(on_raise=()),
    AlertSeverity.MEDIUM: Route(on_raise=(EMAIL,), push_on_count=True),
    AlertSeverity.HARD: Route(on_raise=(PUSH, EMAIL, SLACK, WEBHOOK)),
}


def available_channels(settings: MonitorSettings) -> frozenset[str]:
    """Channels whose settings are present; the others are skipped (a dev setup has none)."""
    found = set()
    if settings.smtp_host and settings.staff_emails:
        found.add(EMAIL)
    if settings.slack_webhook_url is not None:
        found.add(SLACK)
    if settings.webhook_url and settings.webhook_secret is not None:
        found.add(WEBHOOK)
    if settings.push_gateway_url:
        found.add(PUSH)
    return frozenset(found)


def channels_on_raise(severity: str, tenant_id: uuid.UUID | None, available: frozenset[str]) -> list[str]:
    route = ROUTES[AlertSeverity(severity)]
    return [c for c in route.on_raise if c in available and not (c == PUSH and tenant_id is None)]


def channels_on_count(
    severity: str, count: int, push_after: int, tenant_id: uuid.UUID | None, available: frozenset[str]
) -> list[str]:
    """The customer push of a medium alert, exactly when its consecutive-failure count reaches ``push_after``."""
    route = ROUTES[AlertSeverity(severity)]
    if route.push_on_count and count == push_after and tenant_id is not None and PUSH in available:
        return [PUSH]
    return []


TITLES = {
    "heartbeat.stale": "Tenant offline",
    "disk.usage": "Disk almost full",
    "memory.usage": "Memory pressure",
    "backup.failed": "A backup failed",
    "backup.all_failed": "All backups failed",
    "backup.stale": "Backups are stale",
    "backup.offsite": "The off-site backup copy is missing or stale",
    "container.crash": "A container crashed",
    "container.oom": "A container ran out of memory",
    "tls.expiry": "TLS certificate expires soon",
    "fleet.mass_offline": "Many tenants offline at once",
    "heartbeat.ingest_stalled": "No heartbeats reach the monitor",
}


def title(rule: str) -> str:
    if rule.startswith("token_pool."):
        return f"AI token pool at {rule.split('.', 1)[1]} %"
    return TITLES.get(rule, rule)


def render(payload: dict[str, Any]) -> tuple[str, str]:
    """Subject line and plain-text body of a notification, from its stored payload."""
    where = payload.get("domain") or ("platform" if payload.get("tenant_id") is None else str(payload["tenant_id"]))
    kind = payload["kind"]
    prefix = "RESOLVED" if kind == "resolved" else payload["severity"].upper()
    subject = f"[{prefix}] {where}: {title(payload['rule'])}"
    lines = [payload["summary"], ""]
    if kind != "resolved":
        lines.append(
            f"First seen {payload['first_seen']}, last seen {payload['last_seen']}, {payload['count']} time(s)."
        )
    else:
        lines.append(f"Resolved at {payload.get('resolved_at')}.")
    lines += [f"Rule: {payload['rule']}  Alert: {payload['alert_id']}", payload.get("dashboard_url", "")]
    return subject, "\n".join(lines).rstrip() + "\n"
