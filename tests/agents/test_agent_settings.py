"""An agent refuses to start on a LETSBE_ variable nothing declares, and says which one, in one line."""

import os
import subprocess
import sys

import pytest

from letsbe_agent.settings import load_settings, unknown_variables
from letsbe_safety_wrapper.config import SafetyWrapperSettings
from letsbe_secrets_proxy.config import SecretsProxySettings

AGENTS = [
    ("letsbe_safety_wrapper", SafetyWrapperSettings, "LETSBE_SW_"),
    ("letsbe_secrets_proxy", SecretsProxySettings, "LETSBE_SP_"),
]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LETSBE_")}
    return {**env, **extra}


@pytest.mark.parametrize(("module", "cls", "prefix"), AGENTS)
@pytest.mark.parametrize(
    ("suffix_or_name", "unknown"),
    [
        ("BACKUP_STATUS_FILE", True),  # its own prefix, no such field (the name the compose file once used)
        ("BACKUP_STATUS_PATH", False),
        ("backup_status_path", False),  # pydantic-settings reads names case-insensitively
        ("DOMAIN", True),
        ("=LETSBE_BACKUP_STATUS_PATH", True),  # LETSBE_ without any agent's prefix: nobody reads it
        ("=LETSBE_HUB_URL", True),  # the hub's prefix: a tenant agent never reads the hub's settings
        ("=LETSBE_SANDBOX", False),  # platform-wide
        ("=LETSBE_BUS_NAMESPACE", False),
        ("=LETSBE_PG_ADMIN_URL", False),  # the test tooling's own
        ("=DATABASE_URL", False),  # not LETSBE_: not ours to judge
    ],
)
def test_unknown_letsbe_variables_are_named(module, cls, prefix, suffix_or_name, unknown):
    name = suffix_or_name[1:] if suffix_or_name.startswith("=") else prefix + suffix_or_name
    assert unknown_variables(cls, {name: "x"}) == ([name] if unknown else [])


def test_a_variable_of_the_other_agent_is_left_to_that_agent():
    assert unknown_variables(SafetyWrapperSettings, {"LETSBE_SP_SENTINEL_KEY": "x"}) == []
    assert unknown_variables(SecretsProxySettings, {"LETSBE_SW_TOOLS_TOKEN": "x"}) == []


def test_loading_the_settings_refuses_an_unknown_variable(monkeypatch):
    monkeypatch.setenv("LETSBE_SW_BACKUP_STATUS_FILE", "/var/lib/letsbe/backup/backup-status.json")
    with pytest.raises(SystemExit, match="LETSBE_SW_BACKUP_STATUS_FILE"):
        load_settings(SafetyWrapperSettings)
    monkeypatch.delenv("LETSBE_SW_BACKUP_STATUS_FILE")
    monkeypatch.setenv("LETSBE_SW_BACKUP_STATUS_PATH", "/var/lib/letsbe/backup/backup-status.json")
    assert str(load_settings(SafetyWrapperSettings).backup_status_path) == "/var/lib/letsbe/backup/backup-status.json"


@pytest.mark.parametrize(("module", "cls", "prefix"), AGENTS)
def test_the_agent_process_exits_with_one_line_naming_the_variable(module, cls, prefix, tmp_path):
    bad = f"{prefix}BACKUP_STATUS_FILE"
    env = _clean_env(**{bad: "/x", f"{prefix}STATE_DIR": str(tmp_path), f"{prefix}SECRETS_KEY": "not-shown-1234"})
    proc = subprocess.run([sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and bad in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and "not-shown-1234" not in proc.stderr


def test_an_invalid_value_is_one_line_without_the_values(tmp_path):
    env = _clean_env(LETSBE_SW_PORT="not-a-port", LETSBE_SW_TOOLS_TOKEN="secret-token-not-shown")
    proc = subprocess.run(
        [sys.executable, "-m", "letsbe_safety_wrapper"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1 and "port" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "secret-token-not-shown" not in proc.stderr


def test_make_run_hands_the_agents_no_control_plane_settings():
    from letsbe_platform.runner import tenant_env

    shell = {
        "LETSBE_HUB_STRIPE_SECRET_KEY": "sk_live_x",
        "LETSBE_DNS_CLOUDFLARE_API_TOKEN": "t",
        "LETSBE_PROVISIONER_SECRETS_KEY": "k",
        "LETSBE_MONITOR_SMTP_HOST": "h",
        "LETSBE_SANDBOX_DIR": "/d",
        "LETSBE_SW_HUB_URL": "http://hub",
        "PATH": "/bin",
    }
    env = tenant_env(shell)
    assert env == {"LETSBE_SANDBOX_DIR": "/d", "LETSBE_SW_HUB_URL": "http://hub", "PATH": "/bin"}
    assert unknown_variables(SafetyWrapperSettings, env) == []
