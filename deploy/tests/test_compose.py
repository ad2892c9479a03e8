"""The hub and tenant compose files: valid against the Compose specification, and the promises they make."""

from __future__ import annotations

import json
import re
import subprocess
from importlib.resources import files
from pathlib import Path

import pytest
import yaml
from jsonschema.validators import validator_for

# The Compose specification's JSON schema, as the check-jsonschema wheel vendors it (vendor/compose-spec.json,
# from github.com/compose-spec/compose-spec schema/compose-spec.json).
SCHEMA = json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
VALIDATOR = validator_for(SCHEMA)(SCHEMA)

VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
APP_SERVICES = ["hub-api", "provisioner", "dns", "monitor"]


def read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def interpolate(node, env: dict[str, str], missing: list[str]):
    """Compose's variable substitution ($$, $VAR, ${VAR}, ${VAR:-x}, ${VAR-x}, ${VAR:?e}, ${VAR?e}, ${VAR:+x})."""
    if isinstance(node, dict):
        return {k: interpolate(v, env, missing) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env, missing) for v in node]
    if not isinstance(node, str):
        return node

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        value = env.get(name)
        empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if empty else value
        if op in (":?", "?"):
            if empty:
                missing.append(name)
                return ""
            return value
        if op in (":+", "+"):
            return "" if empty else arg
        return value or ""

    return VAR.sub(sub, node)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def rendered(folder: Path) -> dict:
    """compose.yaml as `docker compose config` would see it with env.example as .env."""
    missing: list[str] = []
    doc = interpolate(load(folder / "compose.yaml"), read_env(folder / "env.example"), missing)
    assert not missing, f"compose.yaml needs {sorted(set(missing))}, which env.example does not set"
    return doc


def memory_mb(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([MG])", value).groups()
    return int(number) * (1024 if unit == "G" else 1)


STACKS = ["hub", "tenant"]


@pytest.mark.parametrize("stack", STACKS)
def test_compose_file_matches_the_compose_specification(kit, stack):
    folder = kit.deploy / stack
    for doc in (load(folder / "compose.yaml"), rendered(folder)):
        errors = sorted(VALIDATOR.iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_validator_rejects_what_compose_would_reject():
    broken = {"services": {"db": {"image": "postgres:16", "restart": "sometimes", "healthcheck": {"tset": []}}}}
    assert len(list(VALIDATOR.iter_errors(broken))) >= 1


@pytest.mark.parametrize("stack", STACKS)
def test_every_env_file_and_secret_mount_has_a_documented_example(kit, stack):
    folder = kit.deploy / stack
    doc = load(folder / "compose.yaml")
    examples = {p.name for p in (folder / "secrets.example").iterdir()}
    used = set()
    for service in doc["services"].values():
        for entry in service.get("env_file", []):
            used.add(Path(entry["path"]).name)
        for volume in service.get("volumes", []):
            if isinstance(volume, dict) and volume["source"].startswith("./secrets/"):
                used.add(Path(volume["source"]).name)
    assert used == examples
    # The real files hold secrets: git must never see them.
    ignored = (folder / ".gitignore").read_text().split()
    assert "/.env" in ignored and "/secrets/" in ignored


@pytest.mark.parametrize("stack", STACKS)
def test_examples_hold_placeholders_not_secrets(kit, stack):
    folder = kit.deploy / stack
    for path in [folder / "env.example", *(folder / "secrets.example").iterdir()]:
        for key, value in read_env(path).items() if path.suffix != ".conf" else []:
            if re.search(r"PASSWORD|TOKEN|SECRET|KEY", key):
                assert value == "change-me", f"{path.name}: {key} must be the change-me placeholder"


def test_hub_services_restart_report_health_and_have_limits(kit):
    services = rendered(kit.hub)["services"]
    long_running = [name for name, s in services.items() if s.get("restart") != "no"]
    assert sorted(long_running) == sorted(["db", "nats-1", "nats-2", "nats-3", *APP_SERVICES])
    for name in long_running:
        s = services[name]
        assert s["restart"] == "unless-stopped", name
        assert s["healthcheck"]["test"], name
        assert memory_mb(s["deploy"]["resources"]["limits"]["memory"]) > 0, name
        assert float(s["deploy"]["resources"]["limits"]["cpus"]) > 0, name
    for name in ["migrate", "backup", "restore"]:
        assert memory_mb(services[name]["deploy"]["resources"]["limits"]["memory"]) > 0, name


def test_migrations_run_once_after_the_database_and_before_any_hub_service(kit):
    services = rendered(kit.hub)["services"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["db"] == {"condition": "service_healthy"}
    assert services["migrate"]["image"].split("/")[-1].startswith("migrate:")
    for name in APP_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["migrate"] == {"condition": "service_completed_successfully"}, name
        assert all(deps[f"nats-{i}"] == {"condition": "service_healthy"} for i in (1, 2, 3)), name
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgresql://"), name


def test_the_hub_never_gets_the_docker_socket_and_publishes_on_loopback_only(kit):
    services = rendered(kit.hub)["services"]
    for name, s in services.items():
        for volume in s.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            assert "docker.sock" not in source, name
        for port in s.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert services["hub-api"]["ports"] == ["127.0.0.1:3847:3847"]  # where nginx/hub.conf proxies to
    # Postgres and NATS sit on a network with no way out and no published port.
    assert rendered(kit.hub)["networks"]["backend"]["internal"] is True
    for name in ["db", "nats-1", "nats-2", "nats-3"]:
        assert services[name]["networks"] == ["backend"] and "ports" not in services[name], name


def test_each_hub_service_gets_only_its_own_secrets_file(kit):
    services = rendered(kit.hub)["services"]
    for name in APP_SERVICES:
        assert [e["path"] for e in services[name]["env_file"]] == [f"secrets/{name}.env"]
        assert all(e["required"] for e in services[name]["env_file"])


def test_every_dockerfile_the_stacks_build_exists(kit):
    for stack in STACKS:
        for name, s in rendered(kit.deploy / stack)["services"].items():
            if "build" in s:
                assert (kit.deploy / stack / s["build"]["context"]).resolve() == kit.repo, name
                assert (kit.repo / s["build"]["dockerfile"]).exists(), name


def test_nats_runs_as_a_three_node_jetstream_cluster_with_a_valid_config(kit, tmp_path):
    services = rendered(kit.hub)["services"]
    conf = (kit.hub / "nats" / "nats.conf").read_text()
    names = [services[f"nats-{i}"]["environment"]["NATS_SERVER_NAME"] for i in (1, 2, 3)]
    assert names == ["nats-1", "nats-2", "nats-3"]
    for name in names:
        assert f"nats-route://{name}:6222" in conf
        assert services[name]["volumes"][1].startswith(f"{name}-data:")  # each node its own JetStream store
        env = {"NATS_SERVER_NAME": name, "NATS_USER": "letsbe", "NATS_PASSWORD": "x" * 32, "PATH": "/usr/bin:/bin"}
        checked = subprocess.run(
            [kit.tool("nats-server"), "-t", "-c", str(kit.hub / "nats" / "nats.conf")],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
            cwd=tmp_path,
        )
        assert checked.returncode == 0, checked.stderr + checked.stdout
    assert "jetstream" in conf and "server_name: $NATS_SERVER_NAME" in conf


def test_tenant_stack_has_the_seed_ports_and_memory_budgets(kit):
    services = rendered(kit.tenant)["services"]
    limits = {n: memory_mb(s["deploy"]["resources"]["limits"]["memory"]) for n, s in services.items()}
    assert limits == {"safety-wrapper": 128, "secrets-proxy": 64, "openclaw": 384}
    nginx_mb = 64  # the host's nginx, seed §5.2
    assert sum(limits.values()) + nginx_mb == 640  # the seed's LetsBe overhead per tenant (§5.1)
    assert services["safety-wrapper"]["ports"] == ["127.0.0.1:8200:8200"]
    assert services["secrets-proxy"]["ports"] == ["127.0.0.1:8100:8100"]
    assert services["openclaw"]["network_mode"] == "host" and "ports" not in services["openclaw"]
    assert "18789" in " ".join(services["openclaw"]["healthcheck"]["test"])
    for name, s in services.items():
        assert s["restart"] == "unless-stopped", name
        assert s["healthcheck"]["test"], name


def test_tool_stack_templates_are_referenced_not_copied(kit):
    templates = kit.repo / "services" / "provisioner" / "src" / "letsbe_provisioner" / "templates"
    readme = (kit.tenant / "README.md").read_text()
    assert "services/provisioner/src/letsbe_provisioner/templates/" in readme
    if not templates.is_dir():
        pytest.skip("the provisioner's templates folder does not exist yet; nothing to compare against")
    theirs = {p.read_bytes() for p in templates.rglob("*") if p.is_file() and p.stat().st_size > 64}
    for ours in kit.deploy.rglob("*"):
        if ours.is_file() and "tests" not in ours.parts:
            assert ours.read_bytes() not in theirs, f"{ours} is a copy of a provisioner template"
