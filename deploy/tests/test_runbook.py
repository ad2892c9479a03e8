"""docs/runbook.md stays true: its scenarios, services, script options, settings and API paths all exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RUNBOOK = (REPO / "docs" / "runbook.md").read_text()
SCENARIOS = [  # seed §8.2, with its RTO and RPO
    ("Single tool database corrupted", "15 min"),
    ("VPS disk failure", "30 min"),
    ("VPS completely lost", "2 h"),
    ("Hub database corrupted", "30 min"),
    ("Hub server lost", "2 h"),
    ("Regional outage", "4 h"),
]
# docker compose options that take a value, before or after the subcommand
VALUE_OPTIONS = {"--profile", "-f", "--file", "-e", "--env", "--entrypoint", "--project-directory", "-p"}


def commands(tenant: bool = False) -> list[list[str]]:
    """Every `docker compose ...` line of the runbook's code, as words: those run on the hub, or on a tenant
    (the sections whose title says "(tenant)")."""
    found = []
    for section in re.split(r"^#+ ", RUNBOOK, flags=re.M):
        if ("(tenant)" in section.split("\n", 1)[0]) == tenant:
            lines = re.findall(r"^\s*(docker compose [^\n]+)$", section, re.M)
            found += [shlex.split(line.split(" >>", 1)[0], comments=True) for line in lines]
    return found


def parse(words: list[str]) -> tuple[str, dict[str, list[str]], list[str]]:
    """docker compose [opts] SUB [opts] ARGS -> (SUB, options, ARGS)."""
    options: dict[str, list[str]] = {}
    rest = words[2:]
    sub = None
    args: list[str] = []
    i = 0
    while i < len(rest):
        word = rest[i]
        if args:  # after the service of `run`, everything belongs to the container's command
            args.append(word)
        elif word in VALUE_OPTIONS:
            options.setdefault(word, []).append(rest[i + 1])
            i += 1
        elif word.startswith("-"):
            options.setdefault(word, [])
        elif sub is None:
            sub = word
        else:
            args.append(word)
        i += 1
    return sub, options, args


def hub_services() -> dict:
    return yaml.safe_load((REPO / "deploy" / "hub" / "compose.yaml").read_text())["services"]


@pytest.mark.parametrize(("scenario", "rto"), SCENARIOS)
def test_every_recovery_scenario_of_the_seed_has_a_section(scenario, rto):
    assert re.search(rf"^### {re.escape(scenario)}[^\n]*RTO {re.escape(rto)}, RPO 24 h$", RUNBOOK, re.M)


def test_the_measured_restore_time_is_written_down():
    row = re.search(r"^\| `deploy/tests/(test_backup_restore\.py)::(\w+)` \|[^|]+\| \*\*([\d.]+) s\*\*", RUNBOOK, re.M)
    assert row, "the measured RTO row is missing"
    test_file, test_name, _seconds = row.groups()
    assert f"def {test_name}(" in (REPO / "deploy" / "tests" / test_file).read_text()


def test_compose_commands_name_services_of_the_hub_stack():
    services = hub_services()
    found = commands()
    assert len(found) >= 15
    for words in found:
        sub, options, args = parse(words)
        if sub in ("run",):
            assert args[0] in services, " ".join(words)
            if "ops" in services[args[0]].get("profiles", []):
                assert options.get("--profile") == ["ops"], " ".join(words)
        elif sub in ("stop", "start", "up", "restart", "logs", "pull", "build"):
            assert all(a in services for a in args), " ".join(words)


def test_tenant_commands_name_scripts_options_and_services_the_provisioner_renders(rendered_tenant):
    """What the runbook has ops run on a tenant by hand: each `letsbe-backup` / `letsbe-restore` is a script the
    provisioner renders, with options that script reads; each `docker compose` names services of a tool's stack."""
    scripts = [shlex.split(m) for m in re.findall(r"`(letsbe-(?:backup|restore)(?: [^`]*)?)`", RUNBOOK)]
    assert any(words[0] == "letsbe-restore" and len(words) > 1 for words in scripts)
    for words in scripts:
        script = rendered_tenant / "usr/local/sbin" / words[0]
        assert script.is_file(), f"{words[0]} is not rendered for a tenant"
        text = script.read_text()
        for option in (w for w in words[1:] if w.startswith("--")):
            assert option in text, f"{words[0]} knows no {option}"
    stack = yaml.safe_load((rendered_tenant / "opt/letsbe/stacks/nextcloud/docker-compose.yml").read_text())
    for words in commands(tenant=True):
        sub, _, args = parse(words)
        assert sub in ("stop", "start") and all(a in stack["services"] for a in args), " ".join(words)


def test_backup_and_restore_jobs_get_only_options_and_settings_the_scripts_know():
    services = hub_services()
    assert services["backup"]["command"] == ["backup.sh"]
    assert services["restore"]["entrypoint"] == ["restore.sh"]
    restore_help = (REPO / "deploy" / "hub" / "restore.sh").read_text()
    backup_help = (REPO / "deploy" / "hub" / "backup.sh").read_text()
    runs = [parse(words) for words in commands()]
    restores = [args[1:] for sub, options, args in runs if sub == "run" and args[0] == "restore"]
    assert restores
    for args in restores:
        for arg in args:
            assert (arg.startswith("--") and f"  {arg}" in restore_help) or arg == "latest" or arg.endswith(".dump")
    for sub, options, args in runs:
        if sub == "run" and args[0] == "backup" and "--entrypoint" not in options:
            for setting in options.get("-e", []):
                name = setting.split("=", 1)[0]
                assert re.search(rf"^#   {name} ", backup_help, re.M), f"backup.sh has no setting {name}"


def test_hub_api_paths_in_the_runbook_exist():
    from letsbe_dns.app import create_app as dns_app
    from letsbe_hub.app import create_app

    def shape(path: str) -> str:
        return re.sub(r"\{[^}]+\}|\$[A-Z_]+", "{}", path)

    # What the hub's public URL serves: hub-api, and the dns service's ACME route (nginx/hub.conf).
    served = {shape(p) for p in create_app().openapi()["paths"]} | {"/api/v1/tenant/acme-challenge"}
    assert "/api/v1/tenant/acme-challenge" in dns_app().openapi()["paths"]
    cited = set(re.findall(r"/api/v1/[A-Za-z0-9_/{}$-]+", RUNBOOK))
    assert cited
    assert {shape(p) for p in cited} <= served
