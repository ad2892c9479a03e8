"""What a tenant server gets, checked without a server: compose files, nginx, scripts, secrets, the render CLI."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest
import yaml
from jsonschema.validators import validator_for

from letsbe_contracts.mail import MAIL_SRV
from letsbe_fakes.tls_endpoint import self_signed
from letsbe_provisioner.rendering.plan import (
    NginxPaths,
    Settings,
    dkim_public_key,
    memory_split,
)
from letsbe_provisioner.steps import STEPS
from provisioner_testing import ALL_TOOLS, CATALOG, TOKENS, plan_for


def compose_schema_validator():
    """The Compose specification's JSON schema: deploy/'s vendored copy if there is one, else check-jsonschema's."""
    vendored = sorted(Path("deploy").rglob("compose-spec*.json"))
    raw = (
        vendored[0].read_text()
        if vendored
        else (files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    )
    schema = json.loads(raw)
    return validator_for(schema)(schema)


def test_every_catalog_tool_renders_a_valid_compose_project_within_its_memory_budget() -> None:
    plan = plan_for()
    rendered = {f.path: f for f in plan.files(TOKENS)}
    validator = compose_schema_validator()
    composes = [p for p in rendered if p.endswith("docker-compose.yml")]
    public = {f"{port}:{port}" for st in plan.stacks for port in st.profile.public_ports}
    assert len(composes) == len(ALL_TOOLS) + 2  # every tool, nginx, the AI stack
    for path in composes:
        doc = yaml.safe_load(rendered[path].content)
        errors = sorted(validator.iter_errors(doc), key=str)
        assert not errors, f"{path}: {errors[0].message}"
        for name, svc in doc["services"].items():
            assert svc["restart"] == "unless-stopped", f"{path}:{name}"
            assert svc["mem_limit"].endswith("m"), f"{path}:{name}"
            for port in svc.get("ports", []):
                beyond = not port.startswith("127.0.0.1:") and port not in public
                assert not beyond, f"{path}:{name} publishes {port} beyond loopback"
            for env_file in svc.get("env_file", []):
                ref = path.rsplit("/", 1)[0] + "/" + env_file
                assert rendered[ref].mode == "0600", f"{ref} holds secrets and must be 0600"

    for stack in plan.stacks:
        tool = stack.tool
        doc = yaml.safe_load(rendered[f"/opt/letsbe/stacks/{tool.name}/docker-compose.yml"].content)
        limits = sum(int(s["mem_limit"][:-1]) for s in doc["services"].values())
        assert limits == tool.stack_ram_mb, f"{tool.name}: {limits} MB of limits for a {tool.stack_ram_mb} MB stack"
        assert doc["services"]["app"]["image"] == tool.image
        assert doc["services"]["app"]["ports"] == [
            f"127.0.0.1:{tool.host_port}:{tool.container_port}",
            *(f"{port}:{port}" for port in stack.profile.public_ports),
        ]
        assert ("db" in doc["services"]) == bool(tool.requires_db)
        assert ("redis" in doc["services"]) == tool.requires_redis
        if tool.requires_db:
            assert doc["services"]["app"]["depends_on"]["db"]["condition"] == "service_healthy"
        assert sum(x for x in memory_split(tool) if x) == tool.stack_ram_mb


@pytest.mark.parametrize("tools", [ALL_TOOLS, *((t,) for t in ALL_TOOLS)], ids=lambda t: "+".join(t)[:40])
def test_preflight_asks_for_exactly_the_memory_the_rendered_limits_add_up_to(tools: tuple[str, ...]) -> None:
    plan = plan_for(tools)
    assert plan.needs.ram_mb == plan.budget_mb


def test_the_ai_stack_has_the_seeds_ports_and_memory() -> None:
    doc = yaml.safe_load(
        {f.path: f for f in plan_for(("nextcloud",)).files(TOKENS)}["/opt/letsbe/ai/docker-compose.yml"].content
    )
    svc = doc["services"]
    # OpenClaw's port 18789 is in its rendered configuration; it publishes nothing (see test_networks.py).
    assert "network_mode" not in svc["openclaw"] and "ports" not in svc["openclaw"]
    assert svc["safety-wrapper"]["ports"] == ["127.0.0.1:8200:8200"]
    assert svc["secrets-proxy"]["ports"] == ["127.0.0.1:8100:8100"]
    assert [svc[n]["mem_limit"] for n in ("openclaw", "safety-wrapper", "secrets-proxy")] == ["1280m", "128m", "64m"]
    assert svc["safety-wrapper"]["environment"]["LETSBE_SW_REGISTRATION_TOKEN_FILE"] == (
        "/var/lib/letsbe/safety-wrapper/registration-token"
    )


def test_with_stalwart_its_mail_ports_are_published_opened_and_named_by_dns_and_it_signs_with_the_dkim_key() -> None:
    plan = plan_for(("stalwart", "nextcloud"))
    rendered = {f.path: f for f in plan.files(TOKENS)}
    # the ports the DNS service's records send mail and clients to: MX (25) and the SRV records (but 443: nginx)
    named = {25} | {port for _, port in MAIL_SRV if port != 443}
    app = yaml.safe_load(rendered["/opt/letsbe/stacks/stalwart/docker-compose.yml"].content)["services"]["app"]
    published = {int(p.split(":")[0]) for p in app["ports"] if not p.startswith("127.0.0.1:")}
    firewall = plan.step_script(4)
    opened = {int(p) for p in re.findall(r"^ufw allow (\d+)/tcp", firewall, re.M)}
    config = tomllib.loads(rendered["/opt/letsbe/stacks/stalwart/etc/config.toml"].content)
    listeners = config["server"]["listener"].values()
    listening = {int(bind.rsplit(":", 1)[1]) for listener in listeners for bind in listener["bind"]}
    assert named <= published, f"not published: {named - published}"
    assert named <= opened, f"closed in the firewall: {named - opened}"
    assert named <= listening, f"Stalwart does not listen on {named - listening}"
    assert published <= named | {443}, "nothing else faces the internet"
    assert "/opt/letsbe/stacks/stalwart/etc:/opt/stalwart-mail/etc" in app["volumes"]
    assert rendered["/opt/letsbe/stacks/stalwart/etc/config.toml"].mode == "0600"

    signature = config["signature"]["letsbe-rsa"]
    selector, public_key = plan.dkim()
    assert (signature["domain"], signature["selector"]) == ("example.com", selector)
    assert dkim_public_key(signature["private-key"]) == public_key
    assert config["auth"]["dkim"]["sign"][0]["then"] == "['letsbe-rsa']"


def test_without_stalwart_nothing_but_ssh_and_web_is_opened() -> None:
    plan = plan_for(("nextcloud", "ghost"))
    assert re.findall(r"^ufw allow (\S+)", plan.step_script(4), re.M) == ["22/tcp", "80/tcp", "443/tcp"]
    assert plan.dkim() is None


def test_secrets_live_only_in_0600_files_never_in_compose_files_or_vhosts() -> None:
    plan = plan_for()
    for f in plan.files(TOKENS):
        holds = [name for name, value in plan.secrets.items() if value in f.content]
        holds += [agent for agent, token in TOKENS.items() if token in f.content]
        if holds:
            assert f.mode == "0600", f"{f.path} holds {holds} but is {f.mode}"
            assert not f.path.endswith((".yml", ".conf")), f.path


@pytest.mark.skipif(
    not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()),
    reason="nginx is not installed (make test installs it)",
)
def test_the_rendered_nginx_configuration_passes_nginx_t(tmp_path: Path) -> None:
    conf, tls = tmp_path / "nginx", tmp_path / "tls"
    paths = NginxPaths(
        conf_dir=str(conf), tls_dir=str(tls), user="root", pid=str(tmp_path / "nginx.pid"), log_dir=str(tmp_path)
    )
    plan = plan_for(nginx=paths)
    for f in plan.files(TOKENS):
        if f.path.startswith("/opt/letsbe/nginx/") and not f.path.endswith(".yml"):
            target = conf / f.path.removeprefix("/opt/letsbe/nginx/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f.content)
    shutil.copy("/etc/nginx/mime.types", conf / "mime.types")
    _self_signed(tls, "example.com")
    vhosts = sorted(p.name for p in (conf / "conf.d").iterdir())
    # Every tool but the operator's (Portainer: admin_only, never public).
    public = [t for t in CATALOG.selectable if not t.admin_only]
    assert vhosts == sorted(["00-default.conf"] + [f"{t.subdomain}.conf" for t in public])
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    result = subprocess.run(
        [nginx, "-t", "-c", str(conf / "nginx.conf"), "-p", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_rendered_scripts_pass_shellcheck(tmp_path: Path) -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    plan = plan_for()
    scripts = []
    for step in STEPS:
        p = tmp_path / f"{step.number:02d}.sh"
        p.write_text(plan.step_script(step.number, TOKENS))
        scripts.append(p)
    for f in plan.files(TOKENS):
        if f.content.startswith("#!/usr/bin/env bash"):
            p = tmp_path / f.path.strip("/").replace("/", "_")
            p.write_text(f.content)
            scripts.append(p)
    for task in ("final-backup", "stop-agents"):  # a decommission's tasks on the server
        p = tmp_path / f"{task}.sh"
        p.write_text(plan.server_task_script(task, "0d5f4a9e-8c1b-4f5e-9a3d-2b7c6e1f0a94"))
        scripts.append(p)
    result = subprocess.run(
        [str(shellcheck), "-S", "warning", *map(str, scripts)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_step_7_asks_lets_encrypt_by_default_and_the_configured_acme_server_and_ca_otherwise(tmp_path: Path) -> None:
    default = {f.path: f.content for f in plan_for(("ghost",)).step_files(7)}
    ensure = default["/usr/local/sbin/letsbe-tls-ensure"]
    assert "--server https://acme-v02.api.letsencrypt.org/directory" in ensure
    assert "REQUESTS_CA_BUNDLE" not in ensure and not [p for p in default if "certbot.service.d" in p]
    hook = default["/etc/letsbe/acme/auth-hook.sh"]
    assert "CREDENTIAL_FILE='/var/lib/letsbe/safety-wrapper/credential.json'" in hook  # what the agent writes

    ca, _ = self_signed("pebble.test", dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    plan = plan_for(("ghost",))
    plan.settings = Settings(
        hub_url="https://hub.letsbe.test", acme_directory_url="https://pebble.test:14000/dir", acme_ca_pem=ca.decode()
    )
    rendered = {f.path: f.content for f in plan.step_files(7)}
    ensure = rendered["/usr/local/sbin/letsbe-tls-ensure"]
    assert "--server https://pebble.test:14000/dir" in ensure
    assert 'export REQUESTS_CA_BUNDLE="$ROOT/etc/letsbe/acme/ca.pem"' in ensure
    assert rendered["/etc/letsbe/acme/ca.pem"] == ca.decode()
    dropin = rendered["/etc/systemd/system/certbot.service.d/50-letsbe-ca.conf"]
    assert "Environment=REQUESTS_CA_BUNDLE=/etc/letsbe/acme/ca.pem" in dropin  # certbot.timer's renewals
    script = tmp_path / "07.sh"
    script.write_text(plan.step_script(7))
    shellcheck = Path(sys.executable).parent / "shellcheck"
    result = subprocess.run(
        [str(shellcheck), "-S", "warning", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_render_cli_writes_every_file_at_its_server_path(tmp_path: Path) -> None:
    out = tmp_path / "tenant"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "letsbe_provisioner.render",
            "--tools",
            "nextcloud,ghost",
            "--domain",
            "example.com",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "opt/letsbe/stacks/nextcloud/docker-compose.yml").exists()
    assert (out / "opt/letsbe/nginx/conf.d/blog.conf").exists()
    assert oct((out / "opt/letsbe/stacks/ghost/db.env").stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in (out / "steps").iterdir()) == [f"{s.number:02d}-{s.name}.sh" for s in STEPS]

    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "letsbe_provisioner.render",
            "--tools",
            "nextcloud,wordpress",
            "--domain",
            "example.com",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "unknown tool(s): wordpress" in bad.stderr


def _self_signed(directory: Path, domain: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed(domain, dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    (directory / "fullchain.pem").write_bytes(cert)
    (directory / "privkey.pem").write_bytes(key)
