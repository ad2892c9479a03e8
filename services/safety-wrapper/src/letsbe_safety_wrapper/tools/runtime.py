"""Builds the tool service from settings (in lifespan, never at import)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from letsbe_contracts import load_catalog
from letsbe_safety_wrapper.config import SafetyWrapperSettings
from letsbe_safety_wrapper.tools.approvals import ApprovalAuthority
from letsbe_safety_wrapper.tools.audit import AuditLog
from letsbe_safety_wrapper.tools.executors import Executor, HttpExecutor, HubExecutor
from letsbe_safety_wrapper.tools.policy import Policy
from letsbe_safety_wrapper.tools.secrets import SecretStore
from letsbe_safety_wrapper.tools.service import ToolService
from letsbe_safety_wrapper.tools.state import StateFile


def tool_urls(settings: SafetyWrapperSettings) -> dict[str, str]:
    """Each tool's base URL: ``tool_urls`` if given, else ``tool_host`` and the (overridable) catalog host port."""
    ports = {t.name: t.host_port for t in load_catalog().selectable if t.host_port}
    ports.update(settings.tool_ports)
    return {name: f"http://{settings.tool_host}:{port}" for name, port in ports.items()} | settings.tool_urls


def default_executors(
    settings: SafetyWrapperSettings, client: httpx.AsyncClient, hub_key: Callable[[], str | None] | None
) -> dict[str, Executor]:
    executors: dict[str, Executor] = {"http": HttpExecutor(client, tool_urls(settings))}
    if hub_key is not None and settings.hub_url:
        executors["hub"] = HubExecutor(client, settings.hub_url, hub_key)
    return executors


def build_tool_service(
    settings: SafetyWrapperSettings,
    client: httpx.AsyncClient,
    *,
    approvals: ApprovalAuthority | None = None,
    executors: dict[str, Executor] | None = None,
    hub_key: Callable[[], str | None] | None = None,
) -> ToolService:
    """``hub_key``: the agent's current hub credential, for the calls the hub carries out (``letsbe`` tools.*)."""
    policy = Policy.load(settings.tools_policy_path)
    secrets = None
    if settings.secrets_key is not None:
        secrets = SecretStore.from_settings(settings)
    state = StateFile(settings.tools_dir / "state.json", policy.doc.default_autonomy_level)
    return ToolService(
        policy=policy,
        secrets=secrets,
        audit=AuditLog(settings.tools_dir / "audit.jsonl"),
        state=state,
        approvals=approvals,
        executors=executors or default_executors(settings, client, hub_key),
    )
