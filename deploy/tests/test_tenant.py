"""The tenant side as the provisioner renders it (one source of truth: its templates), checked the way deploy/
checks the hub: the Compose specification, the seed's ports and budgets, restart policies, and no copies here."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from letsbe_contracts import LETSBE_OVERHEAD_MB

TEMPLATES = Path("services/provisioner/src/letsbe_provisioner/templates")


def compose_files(rendered: Path) -> list[Path]:
    return sorted(rendered.rglob("docker-compose.yml"))


def stack(rendered: Path, name: str) -> dict:
    return yaml.safe_load((rendered / "opt" / "letsbe" / name / "docker-compose.yml").read_text())["services"]


def memory_mb(value: str | int) -> int:
    number, unit = re.fullmatch(r"(\d+)([mMgG]?)", str(value)).groups()
    return int(number) * {"g": 1024, "m": 1, "": 1 / 1048576}[unit.lower()]


def test_every_rendered_compose_file_matches_the_compose_specification(rendered_tenant, compose_errors):
    files = compose_files(rendered_tenant)
    assert len(files) >= 16  # the AI stack, nginx and one per tool of the catalog
    for path in files:
        errors = compose_errors(yaml.safe_load(path.read_text()))
        assert not errors, f"{path.relative_to(rendered_tenant)}:\n{errors}"


def test_ai_stack_has_the_seed_ports_and_memory_budgets(rendered_tenant):
    ai = stack(rendered_tenant, "ai")
    limits = {name: memory_mb(s["mem_limit"]) for name, s in ai.items()}
    assert limits == {"openclaw": 1280, "safety-wrapper": 128, "secrets-proxy": 64}  # OpenClaw as measured + Chromium
    nginx = memory_mb(stack(rendered_tenant, "nginx")["nginx"]["mem_limit"])
    assert sum(limits.values()) + nginx == LETSBE_OVERHEAD_MB  # what the calculator and preflight count per tenant
    assert ai["safety-wrapper"]["ports"] == ["127.0.0.1:8200:8200"]
    assert ai["secrets-proxy"]["ports"] == ["127.0.0.1:8100:8100"]
    # OpenClaw: internal AI gate network only, nothing published (services/provisioner/tests/rendering/test_networks.py)
    assert "network_mode" not in ai["openclaw"] and "ports" not in ai["openclaw"]
    assert ai["openclaw"]["networks"] == ["gate"]


MAIL_PORTS = {f"{p}:{p}" for p in (25, 143, 465, 587, 993, 995)}  # Stalwart serves mail to the internet itself


def test_tenant_agents_run_as_uid_1001_and_publish_on_loopback_only(rendered_tenant):
    for path in compose_files(rendered_tenant):
        for name, service in yaml.safe_load(path.read_text())["services"].items():
            for port in service.get("ports", []):
                if (path.parent.name, name) == ("stalwart", "app") and port in MAIL_PORTS:
                    continue
                assert str(port).startswith("127.0.0.1:"), f"{path.parent.name}/{name} publishes {port}"
    ai = stack(rendered_tenant, "ai")
    assert ai["safety-wrapper"]["user"] == ai["secrets-proxy"]["user"] == "1001:1001"


def test_every_tenant_container_restarts_unless_stopped(rendered_tenant):
    for path in compose_files(rendered_tenant):
        for name, service in yaml.safe_load(path.read_text())["services"].items():
            assert service.get("restart") == "unless-stopped", f"{path.parent.name}/{name}"  # seed §4.4


def test_tenant_templates_are_referenced_not_copied(kit):
    templates = kit.repo / TEMPLATES
    assert f"{TEMPLATES.as_posix()}/" in (kit.tenant / "README.md").read_text()
    theirs = {p.read_bytes() for p in templates.rglob("*") if p.is_file()}
    assert theirs, "the provisioner's templates moved: update deploy/tenant/README.md and this test"
    for ours in kit.deploy.rglob("*"):
        if ours.is_file() and "tests" not in ours.parts:
            assert ours.read_bytes() not in theirs, f"{ours} is a copy of a provisioner template"
