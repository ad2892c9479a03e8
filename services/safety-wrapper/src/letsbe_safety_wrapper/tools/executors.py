"""Executors run an allowed call. They are pluggable (an action names its executor); the real one is HTTP to
the tool's API at its base URL (127.0.0.1:<host_port> of the tenant, or the tool's container on its network)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from letsbe_safety_wrapper.tools.errors import NoExecutor, ToolUnavailable
from letsbe_safety_wrapper.tools.policy import ActionSpec

MAX_RESULT_BYTES = 1024 * 1024
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_]+)\}")


@dataclass(frozen=True)
class ToolResult:
    status_code: int
    body: Any  # parsed JSON when the tool answered JSON, else text
    content_type: str | None
    size: int
    sha256: str
    truncated: bool = False

    def summary(self) -> dict[str, Any]:
        """What the audit log keeps: shape, not content."""
        return {"status_code": self.status_code, "bytes": self.size, "sha256": self.sha256,
                "truncated": self.truncated}


class Executor(Protocol):
    async def run(self, tool: str, action: str, spec: ActionSpec, args: dict[str, Any],
                  headers: dict[str, str]) -> ToolResult:
        """Run the call. ``args`` and ``headers`` already carry substituted secret values."""


class HttpExecutor:
    def __init__(self, client: httpx.AsyncClient, urls: dict[str, str]):
        self._client = client
        self._urls = urls  # tool -> base URL, e.g. http://letsbe-ghost:2368

    async def run(self, tool: str, action: str, spec: ActionSpec, args: dict[str, Any],
                  headers: dict[str, str]) -> ToolResult:
        if spec.http is None:
            raise NoExecutor(f"{tool}.{action} has no HTTP route in the policy.")
        base = self._urls.get(tool)
        if base is None:
            raise NoExecutor(f"The tool '{tool}' has no local address on this tenant.")
        path, rest = _fill_path(spec.http.path, args)
        method = spec.http.method
        url = base.rstrip("/") + path
        request: dict[str, Any] = {"headers": headers}
        if method in ("GET", "DELETE", "HEAD", "PROPFIND"):
            request["params"] = {k: v if isinstance(v, str) else json.dumps(v) for k, v in rest.items()}
        elif rest:
            request["json"] = rest
        try:
            async with self._client.stream(method, url, **request) as resp:
                chunks, size, truncated = [], 0, False
                async for chunk in resp.aiter_bytes():
                    if size + len(chunk) > MAX_RESULT_BYTES:
                        chunks.append(chunk[: MAX_RESULT_BYTES - size])
                        size, truncated = MAX_RESULT_BYTES, True
                        break
                    chunks.append(chunk)
                    size += len(chunk)
        except httpx.HTTPError as exc:
            raise ToolUnavailable(f"{tool} did not answer ({type(exc).__name__}).") from exc
        raw = b"".join(chunks)
        content_type = resp.headers.get("content-type")
        body: Any = raw.decode("utf-8", errors="replace")
        if content_type and "json" in content_type and not truncated:
            try:
                body = json.loads(raw)
            except ValueError:
                pass
        return ToolResult(resp.status_code, body, content_type, size, hashlib.sha256(raw).hexdigest(), truncated)


def _fill_path(template: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``/posts/{id}/`` with ``id`` from the arguments (URL-quoted; no ``..`` escapes); the rest is returned."""
    rest = dict(args)

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in rest:
            raise NoExecutor(f"The argument '{name}' is required for this call.")
        value = str(rest.pop(name))
        if any(seg in (".", "..") for seg in value.split("/")):
            raise NoExecutor(f"The argument '{name}' may not contain '.' or '..' path segments.")
        return quote(value, safe="/")

    return _PLACEHOLDER.sub(fill, template), rest


class HubExecutor:
    """The calls the hub itself carries out for the tenant (policy tool ``letsbe``: ``tools.add``, ``tools.remove``):
    a POST to the hub's tenant API with the agent's credential. The hub checks again that a person approved exactly
    this call and that the wrapper consumed the approval, then answers with the job it started (202) or a problem."""

    ACTIONS = {"tools.add": "add", "tools.remove": "remove"}

    def __init__(self, client: httpx.AsyncClient, hub_url: str, api_key: Callable[[], str | None]):
        self._client = client
        self._url = hub_url.rstrip("/") + "/api/v1/tenant/tool-changes"
        self._api_key = api_key

    async def run(self, tool: str, action: str, spec: ActionSpec, args: dict[str, Any],
                  headers: dict[str, str]) -> ToolResult:
        if tool != "letsbe" or action not in self.ACTIONS:
            raise NoExecutor(f"The hub carries out no {tool}.{action}.")
        if set(args) != {"tool"} or not isinstance(args["tool"], str):
            raise NoExecutor(f"{tool}.{action} takes exactly one argument: the catalog tool's name, as 'tool'.")
        key = self._api_key()
        if not key:
            raise ToolUnavailable("This agent is not registered with the hub yet.")
        try:
            resp = await self._client.post(self._url, json={"action": self.ACTIONS[action], "tool": args["tool"]},
                                           headers={"Authorization": f"Bearer {key}"})
        except httpx.HTTPError as exc:
            raise ToolUnavailable(f"The hub did not answer ({type(exc).__name__}).") from exc
        raw = resp.content[:MAX_RESULT_BYTES]
        try:
            body: Any = resp.json()
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        return ToolResult(resp.status_code, body, resp.headers.get("content-type"), len(raw),
                          hashlib.sha256(raw).hexdigest())
