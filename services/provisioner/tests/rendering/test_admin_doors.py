"""No open admin doors: every catalog tool's rendered stack has its admin account set by the provisioner, with the
generated password, before nginx serves it; first-visitor setup routes are closed; no default login survives."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from importlib.resources import files as package_files

import pytest

from letsbe_contracts import load_catalog
from letsbe_provisioner.rendering.plan import SECRET_IMPORT_DIR, Plan
from provisioner_testing import plan_for

CATALOG = load_catalog()
TOOLS = [t.name for t in CATALOG.tools if not t.system]


@dataclass(frozen=True)
class Door:
    """What each tool gives away today if nobody acts: its default login and its first-visitor setup routes."""

    default: tuple[str, str] | None = None  # (login, password) the image ships with
    setup_routes: tuple[str, ...] = ()  # routes that make the first visitor the admin
    method: str = "all"  # "writes": only GET may reach the route (the app's UI asks whether setup is done)


DOORS = {
    "nextcloud": Door(),
    "chatwoot": Door(setup_routes=("/installation/onboarding",)),
    "ghost": Door(setup_routes=("/ghost/api/admin/authentication/setup",), method="writes"),
    "calcom": Door(setup_routes=("/auth/setup", "/api/auth/setup")),
    "stalwart": Door(),
    "odoo": Door(default=("admin", "admin"), setup_routes=("/web/database",)),
    "keycloak": Door(),
    "listmonk": Door(default=("listmonk", "listmonk")),
    "nocodb": Door(),
    "umami": Door(default=("admin", "umami")),
    "uptime_kuma": Door(),
    "portainer": Door(),
    "activepieces": Door(),
    "bookstack": Door(default=("admin@admin.com", "password")),
}
WEAK = {"admin", "password", "umami", "listmonk", "changeme", "secret", ""}
# SECRET_REFs the Safety Wrapper's policy names that the tool cannot issue to a provisioner (and why).
NOT_ISSUABLE = {"activepieces_api_key": "Activepieces Community Edition has no API keys (a paid platform feature)"}
# The Safety Wrapper's policy: which SECRET_REFs each tool's actions use.
POLICY = json.loads((package_files("letsbe_safety_wrapper.tools") / "policy.json").read_text())
BRIEFED = {
    "nocodb": ("nocodb_api_token",), "umami": ("umami_api_token",), "uptime_kuma": ("uptime_kuma_metrics_basic",),
    "portainer": ("portainer_api_key",), "activepieces": ("activepieces_api_key",),
    "bookstack": ("bookstack_token_id", "bookstack_token_secret"), "odoo": ("odoo_agent_password",),
}  # fmt: skip


def test_the_table_covers_every_catalog_tool() -> None:
    assert set(DOORS) == set(TOOLS)


def _files(plan: Plan) -> dict[str, str]:
    return {f.path: f.content for f in plan.step_files(9)}


def _env_values(plan: Plan) -> dict[str, str]:
    values = {}
    for path, content in _files(plan).items():
        if path.endswith(".env"):
            for line in content.splitlines():
                if "=" in line and not line.startswith("#"):
                    key, _, value = line.partition("=")
                    values[f"{path}:{key}"] = value
    return values


@pytest.mark.parametrize("tool", TOOLS)
def test_the_admin_login_is_generated_and_set_before_nginx_serves_the_tool(tool: str) -> None:
    plan = plan_for((tool,))
    script = plan.step_script(9)
    served_from = script.index("nginx -s reload")
    password = plan.secrets[f"{tool}.admin_password"]
    assert len(password) >= 32 and password not in WEAK
    # The tool is configured with it (env, config file or setup command) before nginx serves the vhost.
    assert 0 <= script.find(password) < served_from, f"{tool}: the generated admin password never reaches the tool"
    creds = {c["tool"]: c for c in plan.credentials()}
    if CATALOG.tool(tool).admin_only:
        assert tool not in creds  # the operator's, not the customer's
        return
    assert creds[tool]["password"] == password
    assert creds[tool]["url"] == f"https://{CATALOG.tool(tool).subdomain}.example.com"
    if DOORS[tool].default:
        assert (creds[tool]["login"], creds[tool]["password"]) != DOORS[tool].default


@pytest.mark.parametrize("tool", TOOLS)
def test_no_default_or_weak_credential_is_rendered(tool: str) -> None:
    plan = plan_for((tool,))
    weak = {k: v for k, v in _env_values(plan).items() if re.search(r"PASS|SECRET|KEY$|TOKEN", k.upper()) and v in WEAK}
    assert weak == {}


@pytest.mark.parametrize("tool", TOOLS)
def test_first_visitor_setup_routes_are_closed_in_the_vhost(tool: str) -> None:
    plan = plan_for((tool,))
    vhosts = [c for p, c in _files(plan).items() if p.endswith(".conf") and "/conf.d/" in p]
    if not CATALOG.tool(tool).subdomain or not plan.stacks[0].profile.public:
        return
    (vhost,) = vhosts
    for route in DOORS[tool].setup_routes:
        block = re.search(r"location \^~ " + re.escape(route) + r" \{(.*?)\n    \}", vhost, re.S)
        assert block, f"{tool}: {route} reaches the app"
        if DOORS[tool].method == "all":
            assert "return 404;" in block.group(1)
        else:
            assert "limit_except GET { deny all; }" in block.group(1)


def test_portainer_has_no_public_vhost_and_listens_on_loopback_only() -> None:
    plan = plan_for(("portainer",))
    files = _files(plan)
    assert not [p for p in files if "/conf.d/" in p]
    compose = files["/opt/letsbe/stacks/portainer/docker-compose.yml"]
    assert '"127.0.0.1:9443:9443"' in compose
    assert "--admin-password-file=/run/letsbe/admin_password" in compose
    # Portainer drops the file's trailing newline.
    assert files["/opt/letsbe/stacks/portainer/etc/admin_password"] == plan.secrets["portainer.admin_password"] + "\n"


@pytest.mark.parametrize("tool", sorted(BRIEFED))
def test_the_safety_wrappers_secrets_are_provisioned_into_its_store_and_not_openclaws(tool: str) -> None:
    plan = plan_for((tool,))
    policy_refs = set(re.findall(r"SECRET_REF\(([a-z_]+)\)", json.dumps(POLICY["tools"][tool])))
    files, script = _files(plan), plan.step_script(9)
    step10 = plan.step_script(10)
    openclaw_env = next(f.content for f in plan.step_files(10) if f.path.endswith("/openclaw.env"))
    for name in sorted(policy_refs | set(BRIEFED[tool])):
        if name in NOT_ISSUABLE:
            continue
        path = f"{SECRET_IMPORT_DIR}/{tool}/{name}"
        rendered = files.get(path, "").strip()
        assert rendered or f"capture {tool} {name} " in script, f"{name} is never provisioned"
        if rendered:
            assert rendered not in openclaw_env
    assert f'"$ROOT{SECRET_IMPORT_DIR}"/*/*' in step10
    assert "letsbe_safety_wrapper.tools.secrets set" in step10


def test_bookstack_api_token_is_the_one_the_wrapper_holds() -> None:
    plan = plan_for(("bookstack",))
    files, script = _files(plan), plan.step_script(9)
    token_id = files[f"{SECRET_IMPORT_DIR}/bookstack/bookstack_token_id"].strip()
    assert token_id == plan.secrets["bookstack.token_id"] and token_id in script.split("nginx -s reload")[0]


@pytest.mark.parametrize("tool", TOOLS)
def test_compose_reads_no_dollar_in_the_stack_as_interpolation(tool: str) -> None:
    """A lone "$" in docker-compose.yml is compose interpolation (an error, or a value silently emptied)."""
    compose = _files(plan_for((tool,)))[f"/opt/letsbe/stacks/{tool}/docker-compose.yml"]
    assert "$" not in compose.replace("$$", "")


def test_with_stand_in_apps_nothing_is_set_up_inside_them_and_the_steps_say_so() -> None:
    plan = plan_for(("uptime_kuma",))
    stand_ins = Plan(plan.order, dataclasses.replace(plan.settings, apps_setup=False), plan.secrets)
    assert "docker exec" not in stand_ins.step_script(9).split("docker exec letsbe-nginx")[0]
    assert "admin account not set up (apps_setup is off" in stand_ins.step_script(9)
    assert "letsbe_safety_wrapper.tools.secrets" not in stand_ins.step_script(10)
    assert stand_ins.step_files(9) == plan.step_files(9)


def test_a_portainer_vhost_left_from_before_is_removed() -> None:
    script = plan_for(("portainer",)).step_script(9)
    assert 'rm -f "$ROOT/opt/letsbe/nginx/conf.d/portainer.conf"' in script.split("nginx -s reload")[0]


def test_no_setup_pipes_a_request_body_into_curl() -> None:
    """`printf … | curl` under pipefail fails the step with SIGPIPE (141) whenever curl exits before reading its
    stdin (a refused connection): bodies go in as here-strings."""
    script = plan_for().step_script(9)
    assert "| curl" not in script and "<<<" in script
