"""A test VPS boots a real Debian 12 with systemd, answers SSH with the host key we pin, reaches only the Debian
mirror, and leaves nothing behind when it is stopped."""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh
import pytest

from letsbe_testvps.vps import CONTROLLERS, STATE_DIR, WORK_DIR, Vps, boot, sweep

pytestmark = pytest.mark.vps


async def test_a_vps_boots_debian_12_answers_ssh_and_stop_leaves_nothing_behind(
    _testvps_host: None, testvps_key: asyncssh.SSHKey
) -> None:
    vps: Vps = boot(testvps_key.export_public_key().decode())
    try:
        async with asyncssh.connect(
            vps.ip, username="root", client_keys=[testvps_key], known_hosts=None, connect_timeout=10
        ) as conn:
            assert conn.get_server_host_key().get_fingerprint("sha256") == vps.host_key_fingerprint
            facts = await conn.run(
                ". /etc/os-release; echo $ID $VERSION_ID; ps -o comm= -p 1; systemctl is-system-running; "
                "ip route show default | wc -l",
                check=True,
            )
            assert facts.stdout.split() == ["debian", "12", "systemd", "running", "0"]  # no route out
            # apt's proxy forwards to the Debian mirror and nowhere else.
            proxy = f"http://{vps.host_ip}:3128"
            mirror = await conn.run(f"curl -s -o /dev/null -w '%{{http_code}}' -x {proxy} "
                                    "http://deb.debian.org/debian/dists/bookworm/Release")  # fmt: skip
            assert mirror.stdout == "200"
            other = await conn.run(f"curl -s -x {proxy} http://example.com/")
            assert "is not a Debian mirror URL" in str(other.stdout)
    finally:
        vps.stop()
    assert leftovers(vps) == []


def leftovers(vps: Vps) -> list[str]:
    """What of ``vps`` is still on the host: processes (zombies too), link, cgroups, files."""
    found = [f"pid {p}" for p in (vps.nspawn_pid, vps.leader_pid, vps.proxy_pid, vps.registry_pid)
             if Path(f"/proc/{p}").exists()]  # fmt: skip
    found += [str(p) for p in (Path(f"/sys/class/net/{vps.link}"), WORK_DIR / vps.name, STATE_DIR / vps.name)
              if p.exists()]  # fmt: skip
    return found + [c for c in CONTROLLERS if Path(f"/sys/fs/cgroup/{c}/letsbe-testvps/{vps.name}").exists()]


def test_sweep_removes_a_vps_whose_owner_is_gone(_testvps_host: None, testvps_key: asyncssh.SSHKey) -> None:
    child = os.fork()
    if child == 0:  # an owner that exits at once, as a killed test run would
        os._exit(0)
    os.waitpid(child, 0)
    vps = boot(testvps_key.export_public_key().decode(), owner_pid=child)
    try:
        assert sweep(log=lambda _: None) == [vps.name]
        assert leftovers(vps) == []
    finally:
        vps.stop()
