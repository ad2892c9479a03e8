"""The shipped policy on the wire: calls that ran at once before rules compared canonical values and looked into
nested arguments now wait for approval, and nothing reaches the tool."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

SHIPPED = resources.files("letsbe_safety_wrapper.tools").joinpath("policy.json")


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """The wrapper of these tests runs the shipped policy, not the small test one."""
    path = tmp_path / "policy.json"
    path.write_text(SHIPPED.read_text())
    return path


def _audit(w: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (w.settings.tools_dir / "audit.jsonl").read_text().splitlines()]


# --- the same calls on the wire, at the default autonomy level ------------------------------------------------

WIRE = [
    ("nextcloud", "shares.create", {"path": "/a", "shareType": "3"}),
    ("ghost", "posts.update", {"id": "1", "posts": [{"status": "draft"}, {"status": "published"}]}),
    ("ghost", "posts.create_draft", {"posts": [{"status": "PUBLISHED"}]}),
    ("ghost", "posts.create_draft", {"posts": [{"title": "x", "meta": {"recipients": ["a@b.c"]}}]}),
    ("ghost", "posts.create_draft", {"posts": [{"html": "ＤＲＯＰ ＴＡＢＬＥ posts"}]}),
]


@pytest.mark.parametrize(("tool", "action", "args"), WIRE, ids=range(len(WIRE)))
async def test_respelled_escalations_wait_for_approval_on_the_wire(wrapper, tool, action, args):
    wrapper.store.put("ghost_admin_token", "ghost-admin-token-0123456789", ["ghost"])
    wrapper.store.put("nextcloud_agent_basic", "YWdlbnQ6cGFzc3dvcmQ=", ["nextcloud"])
    r = await wrapper.call(tool, action, args)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending_approval"
    assert wrapper.receiver.requests == []
    assert _audit(wrapper)[-1]["outcome"] == "pending_approval"
