"""The key the proxy presents upstream, and its rotation.

The provisioner renders the tenant's LLM relay key (issued by the hub) as ``LETSBE_SP_UPSTREAM_API_KEY``. The hub's
``rotate-credential`` command with ``credential: "llm-key"`` makes the proxy fetch a new one from the hub (with its
agent credential), keep it in its state directory (0600) and use it at once; the hub ends the previous key after its
grace period. The kept key replaces exactly the rendered key it was fetched for: a restart keeps using it, and when
the provisioner renders a newer key (a re-run of step 10) that one wins.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from letsbe_agent.files import read_json, write_json
from letsbe_agent.runtime import AgentRuntime
from letsbe_platform.logging import get_logger
from letsbe_secrets_proxy.proxy.service import ProxyService

log = get_logger(__name__)

KEY_FILE = "llm-key.json"


def _digest(value: str | None) -> str:
    return hashlib.sha256((value or "").encode()).hexdigest()


def current_key(state_dir: Path | None, rendered: str | None) -> str | None:
    """The rotated key if it replaces the rendered one, else the rendered one."""
    kept = read_json(state_dir / KEY_FILE) if state_dir is not None else None
    if isinstance(kept, dict) and kept.get("replaces") == _digest(rendered) and isinstance(kept.get("key"), str):
        return kept["key"]
    return rendered


async def rotate(agent: AgentRuntime, proxy: ProxyService, state_dir: Path, rendered: str | None) -> dict[str, Any]:
    """Fetch a new relay key from the hub, keep it (before it is used), switch to it."""
    answer = await agent.client.request("POST", "/api/v1/tenant/llm-key")
    key = answer.get("key") if isinstance(answer, dict) else None
    if not isinstance(key, str) or not key:
        raise ValueError("the hub's answer carries no key")
    write_json(state_dir / KEY_FILE, {"replaces": _digest(rendered), "key": key})
    proxy.use_key(key)
    log.info("llm relay key rotated")
    return {"previous_valid_until": answer.get("previous_valid_until")}
