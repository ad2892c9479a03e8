"""deploy/prometheus: every rule is well formed, names only metrics our services export (or records it defines),
and uses the same thresholds as the hub's health summary."""

import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import letsbe_hub.app  # noqa: F401 - registers the hub's metrics
import letsbe_monitor.app  # noqa: F401
import letsbe_provisioner.app  # noqa: F401
from letsbe_hub.alerts import health

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
PROMQL_WORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "by",
    "without",
    "on",
    "ignoring",
    "and",
    "or",
    "unless",
    "rate",
    "increase",
    "histogram_quantile",
    "time",
    "clamp_min",
    "le",
    "bool",
    "offset",
}
BUILTIN_SERIES = {"up"}
DURATION = re.compile(r"^\d+[smhd]$")


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\b\d+(\.\d+)?(e-?\d+)?\b", "", expr)  # numbers such as 1e-9
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return words - PROMQL_WORDS


def load():
    return yaml.safe_load(RULES.read_text())["groups"]


def test_every_rule_is_well_formed():
    names = set()
    for group in load():
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule) and rule["expr"].strip()
            if "alert" in rule:
                assert rule["alert"] not in names, rule["alert"]
                names.add(rule["alert"])
                assert rule["labels"]["severity"] in {"soft", "medium", "hard"}
                assert rule["annotations"]["summary"]
                assert "for" not in rule or DURATION.match(rule["for"])


def test_rules_name_only_exported_metrics_or_their_own_records():
    exported = set(REGISTRY._names_to_collectors)  # includes _bucket/_count/_sum/_total forms
    recorded = {r["record"] for g in load() for r in g["rules"] if "record" in r}
    for group in load():
        for rule in group["rules"]:
            unknown = metric_names(rule["expr"]) - exported - recorded - BUILTIN_SERIES
            assert not unknown, f"{rule.get('alert') or rule.get('record')}: nobody exports {sorted(unknown)}"


def test_thresholds_match_the_health_summary():
    rules = {r["alert"]: r["expr"] for g in load() for r in g["rules"] if "alert" in r}
    assert f"< {1 - health.DISK_USED_MAX_PERCENT / 100:.2f}" in rules["HubDiskLow"]
    assert f"> {health.OUTBOX_AGE_MAX_SECONDS:g}" in rules["HubOutboxBacklog"]
    assert f"> {health.JOB_MAX_AGE_SECONDS:g}" in rules["PeriodicJobStale"]
    assert f"> {health.POOL_USAGE_MAX:g}" in rules["HubDbPoolSaturated"]
    assert "server-migration-check" in rules["PeriodicJobStale"] and set(health.JOB_MAX_AGE_OVERRIDES) == {
        "server-migration-check"
    }


def test_counters_an_alert_rule_counts_exist_at_zero_from_start_up():
    """``increase()`` only sees an increment of a series that already existed: each counter a rule counts is
    exported at 0 as soon as the process (or the consumer / outbox relay it is labelled by) starts."""
    from letsbe_contracts import OrderCreatedV1
    from letsbe_platform.bus import Consumer
    from letsbe_platform.outbox import OutboxRelay

    async def handler(event, delivery) -> None:
        return None

    Consumer(
        None,  # type: ignore[arg-type]
        durable="rules-on-order-created",
        event=OrderCreatedV1,
        handler=handler,
        max_deliver=1,
        backoff=(1.0,),
        ack_wait=1,
        concurrency=1,
        deliver_new_only=False,
    )
    OutboxRelay("postgresql://letsbe@127.0.0.1/letsbe", "rules", None)  # type: ignore[arg-type]
    series = [(s.name, s.labels) for m in REGISTRY.collect() for s in m.samples]
    counted = [
        (name, dict(re.findall(r'(\w+)="([^"]*)"', matchers or "")))
        for g in load()
        for r in g["rules"]
        for name, matchers in re.findall(r"increase\((\w+)(\{[^}]*\})?\[", r["expr"])
    ]
    assert len(counted) >= 5
    for name, wanted in counted:
        assert any(n == name and wanted.items() <= labels.items() for n, labels in series), (name, wanted)
