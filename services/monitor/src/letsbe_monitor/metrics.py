"""The monitor's own Prometheus metrics (shared ones live in letsbe_platform.metrics)."""

from prometheus_client import Counter, Gauge, Histogram

from letsbe_platform.metrics import LATENCY_BUCKETS

ALERTS_RAISED = Counter("monitor_alerts_raised_total", "Alerts opened", ["rule", "severity"])
ALERTS_RESOLVED = Counter("monitor_alerts_resolved_total", "Alerts resolved", ["rule"])
SWEEP_SECONDS = Histogram("monitor_sweep_duration_seconds", "One liveness sweep", buckets=LATENCY_BUCKETS)
TENANTS_OFFLINE = Gauge(
    "monitor_tenants_offline_pending", "Offline tenants not alerted one by one (settling, or part of a fleet incident)"
)
TENANTS_WATCHED = Gauge("monitor_tenants_watched", "Tenants the monitor watches")
DELIVERIES = Counter("monitor_deliveries_total", "Notification attempts by channel and outcome", ["channel", "outcome"])
# At 0 from start-up, so an alert rule's increase() sees the first failure (models.py names the channels).
for _channel in ("email", "slack", "webhook", "push"):
    for _outcome in ("sent", "retry", "failed", "suppressed"):
        DELIVERIES.labels(_channel, _outcome)
DELIVERY_SECONDS = Histogram(
    "monitor_delivery_duration_seconds",
    "Time to hand one notification to its channel",
    ["channel"],
    buckets=LATENCY_BUCKETS,
)
TLS_CHECKS = Counter("monitor_tls_checks_total", "TLS probes by outcome", ["outcome"])
