"""The hub's compose file: valid against the Compose specification, and the promises it makes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
APP_SERVICES = ["hub-api", "provisioner", "dns", "monitor"]
WATCHERS = ["prometheus", "alertmanager"]


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


def test_hub_compose_file_matches_the_compose_specification(kit, compose_errors):
    for doc in (load(kit.hub / "compose.yaml"), rendered(kit.hub)):
        assert not compose_errors(doc)


def test_the_validator_rejects_what_compose_would_reject(compose_errors):
    broken = {
        "services": {"db": {"image": "postgres:16", "helthcheck": {}, "depends_on": {"x": {"condition": "soon"}}}}
    }
    found = compose_errors(broken)
    assert "'helthcheck'" in found and "{'condition': 'soon'}" in found


def test_every_env_file_and_secret_mount_has_a_documented_example(kit):
    folder = kit.hub
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


def test_examples_hold_placeholders_not_secrets(kit):
    folder = kit.hub
    for path in [folder / "env.example", *(folder / "secrets.example").iterdir()]:
        for key, value in read_env(path).items() if path.suffix == ".env" or path.name == "env.example" else []:
            if re.search(r"PASSWORD|TOKEN|SECRET|KEY", key):
                assert value == "change-me", f"{path.name}: {key} must be the change-me placeholder"
    alertmanager = load(folder / "secrets.example" / "alertmanager.yml")
    assert alertmanager["global"]["smtp_auth_password"] == "change-me"
    assert alertmanager["global"]["slack_api_url"].endswith("/change-me")
    webhooks = [w for r in alertmanager["receivers"] for w in r.get("webhook_configs", [])]
    assert webhooks and all(w["http_config"]["authorization"]["credentials"] == "change-me" for w in webhooks)


def test_hub_services_restart_report_health_and_have_limits(kit):
    services = rendered(kit.hub)["services"]
    long_running = [name for name, s in services.items() if s.get("restart") != "no"]
    assert sorted(long_running) == sorted(["db", "nats-1", "nats-2", "nats-3", *APP_SERVICES, *WATCHERS])
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


def test_every_dockerfile_the_hub_builds_exists(kit):
    for name, s in rendered(kit.hub)["services"].items():
        if "build" in s:
            assert (kit.hub / s["build"]["context"]).resolve() == kit.repo, name
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
