"""Hub self-monitoring (§9.3): one JSON summary for operators, and gauges Prometheus scrapes for the same.

Connection pool usage, outbox backlog, the last success of every periodic job of this process, disk space on the
hub host, open alerts. API latency, Stripe webhook latency and failed provisioning jobs are histograms/counters of
their own contexts, exported on /metrics; deploy/prometheus/alerts.yml has the rules over all of them.
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime

from prometheus_client import Gauge
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.alerts import repository as repo
from letsbe_hub.alerts.schemas import DatabaseHealth, DiskHealth, Health, JobHealth, OutboxHealth, PoolHealth
from letsbe_hub.db import outbox
from letsbe_platform.logging import get_logger
from letsbe_platform.metrics import BACKGROUND_TASK_LAST_SUCCESS
from letsbe_platform.web import Runtime

log = get_logger(__name__)

# Thresholds of "degraded"; the Prometheus rules in deploy/prometheus use the same figures.
DISK_PATH = "/"
DISK_USED_MAX_PERCENT = 85.0
POOL_USAGE_MAX = 0.8
OUTBOX_AGE_MAX_SECONDS = 60.0
JOB_MAX_AGE_SECONDS = 900.0
JOB_MAX_AGE_OVERRIDES = {"server-migration-check": 26 * 3600.0}  # a daily job
SELF_CHECK_SECONDS = 30.0

HUB_DISK_FREE = Gauge("hub_disk_free_bytes", "Free bytes on the hub host's filesystem", ["path"])
HUB_DISK_TOTAL = Gauge("hub_disk_total_bytes", "Size of the hub host's filesystem", ["path"])
HUB_OUTBOX_UNPUBLISHED = Gauge("hub_outbox_unpublished_rows", "Hub outbox rows not yet published to NATS")
HUB_OUTBOX_OLDEST_AGE = Gauge("hub_outbox_oldest_unpublished_age_seconds", "Age of the oldest unpublished row")


def disk(path: str = DISK_PATH) -> DiskHealth:
    usage = shutil.disk_usage(path)
    HUB_DISK_FREE.labels(path).set(usage.free)
    HUB_DISK_TOTAL.labels(path).set(usage.total)
    used = 100.0 * (usage.total - usage.free) / usage.total if usage.total else 0.0
    return DiskHealth(path=path, total_bytes=usage.total, free_bytes=usage.free, used_percent=round(used, 2))


def pool(rt: Runtime) -> PoolHealth | None:
    engine_pool = rt.engine.pool if rt.has_database else None
    if engine_pool is None or not hasattr(engine_pool, "checkedout"):
        return None
    size = engine_pool.size()
    checked_out = engine_pool.checkedout()
    max_connections = size + max(getattr(engine_pool, "_max_overflow", 0), 0)
    return PoolHealth(
        size=size,
        checked_out=checked_out,
        overflow=max(engine_pool.overflow(), 0),
        max_connections=max_connections,
        usage=round(checked_out / max_connections, 3) if max_connections else 0.0,
    )


async def outbox_backlog(session: AsyncSession) -> OutboxHealth:
    count, oldest = (
        await session.execute(
            select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.published_at.is_(None))
        )
    ).one()
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else None
    HUB_OUTBOX_UNPUBLISHED.set(count)
    HUB_OUTBOX_OLDEST_AGE.set(age or 0.0)
    return OutboxHealth(unpublished=count, oldest_age_seconds=round(age, 3) if age is not None else None)


def jobs(now: float | None = None) -> list[JobHealth]:
    now = time.time() if now is None else now
    out = []
    for metric in BACKGROUND_TASK_LAST_SUCCESS.collect():
        for sample in metric.samples:
            task, at = sample.labels["task"], sample.value
            age = max(now - at, 0.0)
            limit = JOB_MAX_AGE_OVERRIDES.get(task, JOB_MAX_AGE_SECONDS)
            out.append(
                JobHealth(
                    task=task,
                    last_success_at=datetime.fromtimestamp(at, UTC),
                    age_seconds=round(age, 3),
                    stale=age > limit,
                )
            )
    return sorted(out, key=lambda j: j.task)


async def summary(rt: Runtime, session: AsyncSession) -> Health:
    problems: list[str] = []
    started = time.perf_counter()
    try:
        await session.execute(text("SELECT 1"))
        database = DatabaseHealth(ok=True, latency_ms=round((time.perf_counter() - started) * 1000, 2), pool=pool(rt))
        backlog: OutboxHealth | None = await outbox_backlog(session)
        open_alerts = await repo.open_by_severity(session)
    except Exception as exc:  # the summary must still answer when the database does not
        log.warning("health: database check failed", error=repr(exc))
        database, backlog, open_alerts = DatabaseHealth(ok=False, latency_ms=None, pool=pool(rt)), None, {}
        problems.append(f"database unreachable: {type(exc).__name__}")
    if database.pool is not None and database.pool.usage > POOL_USAGE_MAX:
        problems.append(f"connection pool {database.pool.usage:.0%} in use")
    if backlog is not None and (backlog.oldest_age_seconds or 0) > OUTBOX_AGE_MAX_SECONDS:
        problems.append(f"outbox backlog: {backlog.unpublished} rows, oldest {backlog.oldest_age_seconds:.0f} s")
    job_list = jobs()
    problems += [f"periodic job {j.task} last succeeded {j.age_seconds:.0f} s ago" for j in job_list if j.stale]
    space = disk()
    if space.used_percent > DISK_USED_MAX_PERCENT:
        problems.append(f"disk {space.path} {space.used_percent:.1f} % used")
    return Health(
        status="degraded" if problems else "ok",
        checked_at=datetime.now(UTC),
        problems=problems,
        database=database,
        outbox=backlog,
        jobs=job_list,
        disk=space,
        open_alerts=open_alerts,
    )


async def self_check(rt: Runtime) -> None:
    """Keeps the gauges fresh between scrapes, so Prometheus alerts even when nobody opens the summary.

    Runs in every replica (each keeps its own process's gauges); it only reads, so replicas cannot conflict.
    """
    disk()
    async with rt.sessions() as session:
        await outbox_backlog(session)
