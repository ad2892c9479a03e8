"""Where the Safety Wrapper sends a tool call: the base URL rendered per tool wins over 127.0.0.1:<catalog port>."""

from __future__ import annotations

import pytest

from letsbe_contracts import load_catalog
from letsbe_safety_wrapper.config import SafetyWrapperSettings
from letsbe_safety_wrapper.tools.runtime import tool_urls


def test_rendered_tool_urls_from_the_env_file_win_over_host_and_catalog_port(monkeypatch: pytest.MonkeyPatch):
    # As the provisioner's safety-wrapper.env delivers them (one JSON line).
    monkeypatch.setenv("LETSBE_SW_TOOL_URLS", '{"ghost":"http://letsbe-ghost:2368"}')
    monkeypatch.setenv("LETSBE_SW_TOOL_PORTS", '{"listmonk":9999}')
    urls = tool_urls(SafetyWrapperSettings(log_json=False))
    nextcloud = load_catalog().tool("nextcloud").host_port
    assert urls["ghost"] == "http://letsbe-ghost:2368"
    assert urls["listmonk"] == "http://127.0.0.1:9999"
    assert urls["nextcloud"] == f"http://127.0.0.1:{nextcloud}"
