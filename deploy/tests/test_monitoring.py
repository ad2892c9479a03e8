"""The hub's self-monitoring as deployed: Prometheus (deploy/prometheus) loads the §9.3 rules and sends their alerts
to Alertmanager, which routes them to the §9.2 staff channels. Checked with the real promtool and amtool."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
ALERTMANAGER = REPO / "deploy" / "hub" / "secrets.example" / "alertmanager.yml"
COMPOSE = REPO / "deploy" / "hub" / "compose.yaml"


def tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is missing: `make system-tools` installs Debian's prometheus and alertmanager")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)


def prometheus_config_here(tmp_path: Path, rules: Path = PROMETHEUS / "alerts.yml") -> Path:
    """prometheus.yml with its rule file where compose mounts it (/etc/prometheus) pointed at ``rules``."""
    config = (PROMETHEUS / "prometheus.yml").read_text().replace("/etc/prometheus/alerts.yml", str(rules))
    path = tmp_path / "prometheus.yml"
    path.write_text(config)
    return path


def test_prometheus_accepts_the_config_and_the_rules(tmp_path):
    done = run(tool("promtool"), "check", "config", str(prometheus_config_here(tmp_path)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "rules found" in done.stdout


def test_promtool_refuses_a_broken_rule(tmp_path):
    broken = tmp_path / "alerts.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: Bad\n        expr: sum(rate(x[5m]\n")
    done = run(tool("promtool"), "check", "config", str(prometheus_config_here(tmp_path, broken)))
    assert done.returncode != 0


def test_prometheus_scrapes_every_service_where_compose_runs_it_and_alerts_alertmanager():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for job in config["scrape_configs"]:
        [target] = job["static_configs"][0]["targets"]
        host, port = target.split(":")
        assert host == job["job_name"] and host in services
        assert any(p.endswith(f":{port}") for p in services[host]["ports"]), target
        assert "backend" in services[host]["networks"]
    [alertmanager] = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanager == "alertmanager:9093" and "alertmanager" in services
    assert set(services["prometheus"]["networks"]) & set(services["alertmanager"]["networks"])
    mounted = {v.split(":")[1] for v in services["prometheus"]["volumes"] if isinstance(v, str)}
    assert {"/etc/prometheus/prometheus.yml", "/etc/prometheus/alerts.yml"} <= mounted
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_alertmanager_accepts_the_example_config():
    done = run(tool("amtool"), "check-config", str(ALERTMANAGER))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("severity", "receiver", "channels"),
    [
        ("hard", "staff-hard", {"email_configs", "slack_configs", "webhook_configs"}),
        ("medium", "staff-medium", {"email_configs"}),
        ("soft", "no-notification", set()),
    ],
)
def test_alerts_reach_the_staff_channels_of_their_severity(severity, receiver, channels):
    """§9.2: hard → email + Slack + webhook, medium → email, soft → the dashboard only (no notification)."""
    done = run(tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER}", f"severity={severity}")
    assert done.returncode == 0 and done.stdout.strip() == receiver, done.stdout + done.stderr
    config = yaml.safe_load(ALERTMANAGER.read_text())
    [found] = [r for r in config["receivers"] if r["name"] == receiver]
    assert set(found) - {"name"} == channels
    assert all(c.get("send_resolved") for key in channels for c in found[key])


def test_every_rule_severity_has_a_route():
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    severities = {r["labels"]["severity"] for g in rules for r in g["rules"] if "alert" in r}
    assert severities <= {"soft", "medium", "hard"} and {"medium", "hard"} <= severities


def test_a_counter_exported_at_zero_fires_on_its_first_failure(tmp_path):
    """Why the services export the counters the rules count at 0 from start-up: increase() over a series that
    starts at 1 sees nothing, over one that goes 0 → 1 it sees the failure."""
    (tmp_path / "test.yml").write_text(
        textwrap.dedent(
            f"""\
            rule_files: [{PROMETHEUS / "alerts.yml"}]
            evaluation_interval: 1m
            tests:
              - interval: 1m
                input_series:
                  - series: 'provisioner_jobs_finished_total{{job="provisioner", outcome="failed"}}'
                    values: '0 0 1 1 1'
                  - series: 'events_dead_lettered_total{{job="dns", consumer="dns-on-server-allocated"}}'
                    values: '_ _ 1 1 1'
                alert_rule_test:
                  - eval_time: 4m
                    alertname: ProvisioningJobsFailing
                    exp_alerts:
                      - exp_labels: {{severity: medium, job: provisioner, outcome: failed}}
                        exp_annotations: {{summary: "1 provisioning job(s) failed in the last hour"}}
                  - eval_time: 4m
                    alertname: EventsDeadLettered
                    exp_alerts: []
            """
        )
    )
    done = run(tool("promtool"), "test", "rules", str(tmp_path / "test.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
