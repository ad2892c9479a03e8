"""The scripts of a tool added to or removed from a live tenant, run for real (bash, coreutils, tar) in the loopback
target's sandbox after steps 9 and 10: only the tool's own files change (and the Safety Wrapper's routes), a second
run changes nothing, and a tool is removed only once its final backup is complete."""

from __future__ import annotations

import pytest

from letsbe_contracts import Tier
from letsbe_fakes.ssh_target import SshTarget
from letsbe_provisioner.jobs import ssh
from letsbe_provisioner.jobs.tools import final_backup_dir
from letsbe_provisioner.rendering.plan import Plan, generate_secrets
from provisioner_testing import TOKENS, plan_for

from ..conftest import server_target
from .test_scripts_on_target import run, snapshot

BACKUP = final_backup_dir("ghost", "job-1")  # type: ignore[arg-type]


def with_tools(plan: Plan, tools: tuple[str, ...]) -> Plan:
    """The same tenant (same secrets) with another tool list, as the provisioner renders before and after."""
    secrets = {**generate_secrets(tools), **plan.secrets}
    return Plan(plan.order.model_copy(update={"tools": tools}), plan.settings, secrets)


@pytest.fixture
async def provisioned(target: SshTarget):
    """A tenant with nextcloud and ghost after steps 9 and 10, and an SSH connection to it."""
    plan = plan_for(("nextcloud", "ghost"), root=str(target.root), tier=Tier.LITE)
    conn = await ssh.connect(server_target(target), target.client_key, timeout=5)
    for number in (9, 10):
        code, lines = await run(conn, plan.step_script(number, TOKENS), target)
        assert code == 0, "\n".join(lines)
    yield plan, conn
    conn.close()


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


async def test_adding_a_tool_writes_only_its_files_and_the_wrappers_routes_once(provisioned, target: SshTarget):
    plan, conn = provisioned
    after = with_tools(plan, ("nextcloud", "ghost", "listmonk"))
    before = snapshot(target.root)
    for script in (after.tool_add_script("listmonk"), after.agent_routes_script(added="listmonk")):
        code, lines = await run(conn, script, target)
        assert code == 0, "\n".join(lines)
    touched = changed(before, snapshot(target.root))
    assert {p for p in touched if not p.startswith("opt/letsbe/stacks/listmonk/")} == {
        "opt/letsbe/nginx/conf.d/newsletter.conf",
        "opt/letsbe/ai/docker-compose.yml",
        "opt/letsbe/ai/safety-wrapper.env",
    }
    assert "opt/letsbe/stacks/listmonk/backup.conf" in touched  # the nightly backups dump it from now on
    recreated = [c for c in target.calls("docker") if "--force-recreate" in c]
    assert recreated and recreated[-1][-1] == "safety-wrapper"

    again = snapshot(target.root)
    calls = len(target.calls("docker"))
    for script in (after.tool_add_script("listmonk"), after.agent_routes_script(added="listmonk")):
        code, lines = await run(conn, script, target)
        assert code == 0 and not [ln for ln in lines if ln.startswith("stdout: wrote ")], lines
    assert snapshot(target.root) == again
    assert not [c for c in target.calls("docker")[calls:] if "--force-recreate" in c]  # unchanged: not recreated


async def test_removing_a_tool_keeps_a_final_backup_first_and_refuses_without_one(provisioned, target: SshTarget):
    plan, conn = provisioned
    after = with_tools(plan, ("nextcloud",))
    code, lines = await run(conn, plan.tool_remove_script("ghost", BACKUP), target)
    assert code != 0 and any("no complete final backup" in ln for ln in lines), lines
    assert (target.root / "opt/letsbe/stacks/ghost/docker-compose.yml").exists()

    code, lines = await run(conn, plan.final_backup_script("ghost", BACKUP), target)
    assert code == 0, "\n".join(lines)
    kept = target.root / BACKUP.lstrip("/")
    assert {p.name for p in kept.iterdir()} >= {".complete", "ghost.mysql.gz", "stack.tar.gz"}
    dumps = len([c for c in target.calls("docker") if c[:2] == ["docker", "exec"] and "letsbe-ghost-db" in c])
    code, lines = await run(conn, plan.final_backup_script("ghost", BACKUP), target)
    assert code == 0 and any("already in" in ln for ln in lines), lines
    assert len([c for c in target.calls("docker") if c[:2] == ["docker", "exec"] and "letsbe-ghost-db" in c]) == dumps

    nextcloud = {p: h for p, h in snapshot(target.root).items() if "stacks/nextcloud" in p}
    for script in (after.agent_routes_script(), plan.tool_remove_script("ghost", BACKUP)):
        code, lines = await run(conn, script, target)
        assert code == 0, "\n".join(lines)
    assert not (target.root / "opt/letsbe/stacks/ghost").exists()
    assert not (target.root / "opt/letsbe/nginx/conf.d/blog.conf").exists()
    assert (kept / ".complete").exists()
    assert {p: h for p, h in snapshot(target.root).items() if "stacks/nextcloud" in p} == nextcloud
    downs = [c for c in target.calls("docker") if "down" in c]
    code, lines = await run(conn, plan.tool_remove_script("ghost", BACKUP), target)
    assert code == 0 and not [ln for ln in lines if ln.startswith("stdout: removed")], lines
    assert [c for c in target.calls("docker") if "down" in c] == downs  # removed once
