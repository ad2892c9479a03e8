"""Builds the tool service from settings (in lifespan, never at import)."""

from __future__ import annotations

import httpx

from letsbe_contracts import load_catalog
from letsbe_safety_wrapper.config import SafetyWrapperSettings
from letsbe_safety_wrapper.tools.approvals import ApprovalAuthority
from letsbe_safety_wrapper.tools.audit import AuditLog
from letsbe_safety_wrapper.tools.executors import Executor, HttpExecutor
from letsbe_safety_wrapper.tools.policy import Policy
from letsbe_safety_wrapper.tools.secrets import SecretStore
from letsbe_safety_wrapper.tools.service import ToolService
from letsbe_safety_wrapper.tools.state import StateFile


def tool_ports(settings: SafetyWrapperSettings) -> dict[str, int]:
    ports = {t.name: t.host_port for t in load_catalog().selectable if t.host_port}
    ports.update(settings.tool_ports)
    return ports


def build_tool_service(
    settings: SafetyWrapperSettings,
    client: httpx.AsyncClient,
    *,
    approvals: ApprovalAuthority | None = None,
    executors: dict[str, Executor] | None = None,
) -> ToolService:
    policy = Policy.load(settings.tools_policy_path)
    secrets = None
    if settings.secrets_key is not None:
        secrets = SecretStore(settings.secrets_path, settings.secrets_key.get_secret_value())
    state = StateFile(settings.tools_dir / "state.json", policy.doc.default_autonomy_level)
    return ToolService(
        policy=policy,
        secrets=secrets,
        audit=AuditLog(settings.tools_dir / "audit.jsonl"),
        state=state,
        approvals=approvals,
        executors=executors or {"http": HttpExecutor(client, tool_ports(settings), settings.tool_host)},
    )
