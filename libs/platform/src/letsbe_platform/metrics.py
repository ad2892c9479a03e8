"""Prometheus metrics shared by every service (one registry per process)."""

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route template",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
EVENT_HANDLING_SECONDS = Histogram(
    "event_handling_duration_seconds",
    "Time to handle one event, by consumer and outcome",
    ["consumer", "outcome"],
    buckets=LATENCY_BUCKETS,
)
EVENTS_DEAD_LETTERED = Counter("events_dead_lettered_total", "Messages sent to the dead-letter subject", ["consumer"])
OUTBOX_PUBLISHED = Counter("outbox_published_total", "Outbox rows published to JetStream", ["schema"])
OUTBOX_RELAY_ERRORS = Counter("outbox_relay_errors_total", "Outbox relay faults (rows stay unsent)", ["schema"])
DB_POOL_CHECKED_OUT = Gauge("db_pool_connections_in_use", "Database connections checked out of the pool")
DB_POOL_SIZE = Gauge("db_pool_size", "Database connection pool size")
BACKGROUND_TASK_LAST_SUCCESS = Gauge(
    "background_task_last_success_timestamp_seconds", "When a periodic job last completed", ["task"]
)
LEASE_HELD = Gauge("lease_held", "1 while this process holds the named lease (exactly one replica acts)", ["lease"])
