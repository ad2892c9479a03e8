"""Helpers of the approvals tests (the hub's own, and the Safety Wrapper's client against the hub under tests/)."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

ADMIN = "/api/v1/admin/approvals"


def args_hash(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def approval_body(args_hash: str, **over: Any) -> dict[str, Any]:
    body = {"tool": "ghost", "action": "posts.delete", "risk_class": "CRITICAL_RED", "args_hash": args_hash,
            "args_preview": {"id": "42"}, "reasons": ["deletes a post"], "ttl_seconds": 900}  # fmt: skip
    return {**body, **over}


async def decide(
    hub: httpx.AsyncClient, admin: dict[str, str], approval_id: Any, decision: str = "approve"
) -> httpx.Response:
    return await hub.post(f"{ADMIN}/{approval_id}/decision", json={"decision": decision, "note": "ok"}, headers=admin)
