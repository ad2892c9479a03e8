"""Locally built stand-ins for the container images a tenant pulls (Docker Hub and our registry are unreachable).

One root file system, built once from the cached Debian 12 image plus Debian's nginx (and cached next to it), is
imported into the VPS's own dockerd and tagged under every name the rendered compose files use, before the first
step that starts containers. Compose does not pull an image that is present, so the steps run unchanged:

- ``nginx:*``: Debian's nginx-light (``nginx -g 'daemon off;'``, an ``nginx`` user as the official image has), so
  step 6 and every ``nginx -t`` / reload really run against the rendered configuration;
- everything else (tool stacks, OpenClaw, Safety Wrapper, Secrets Proxy): a container that only sleeps, so compose,
  networks, mounts, users and memory limits are real but the application is not.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
from pathlib import Path
from typing import Protocol

from letsbe_testvps.image import CACHE_DIR, ensure_image, host_mirror, recipe_key

STANDIN_PACKAGES = ("nginx-light",)
BASE_TAG = "letsbe-testvps/standin-base:1"


class _File(Protocol):
    path: str
    content: str


class _Vps(Protocol):
    leader_pid: int


def standin_rootfs() -> Path:
    """The stand-ins' root file system (built on first use: the test image plus nginx-light, ~20 s)."""
    image = ensure_image()
    key = recipe_key(host_mirror()) + "-standin-" + "-".join(STANDIN_PACKAGES)
    done = CACHE_DIR / key / "rootfs"
    if (CACHE_DIR / key / "complete").exists():
        return done
    with open(CACHE_DIR / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (CACHE_DIR / key / "complete").exists():
            return done
        build = CACHE_DIR / f"{key}.build"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir()
        try:
            root = build / "rootfs"
            subprocess.run(["cp", "-a", str(image), str(root)], check=True)
            shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")  # apt in the chroot uses the host's network
            chroot = ["chroot", str(root)]
            env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
            subprocess.run([*chroot, "apt-get", "-qq", "update"], check=True, env=env, stdout=subprocess.DEVNULL)
            subprocess.run(
                [*chroot, "apt-get", "-qq", "install", "-y", "--no-install-recommends", *STANDIN_PACKAGES],
                check=True, env=env, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            subprocess.run([*chroot, "useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "nginx"],
                           check=True)  # fmt: skip
            for p in ("var/lib/apt/lists", "var/cache/apt/archives", "etc/nginx/sites-enabled"):
                shutil.rmtree(root / p, ignore_errors=True)
            (root / "etc/resolv.conf").write_text("")
            (build / "complete").write_text("1\n")
            build.rename(CACHE_DIR / key)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return done


def compose_images(files: list[_File]) -> list[str]:
    """The images the rendered compose files name, in order, once each."""
    found: list[str] = []
    for f in files:
        if f.path.endswith(".yml"):
            for name in re.findall(r"^\s+image:\s*\"?([^\"\s]+)\"?\s*$", f.content, re.M):
                if name not in found:
                    found.append(name)
    return found


def preload(vps: _Vps, files: list[_File]) -> list[str]:
    """Import the stand-in root file system into the VPS's dockerd and tag it as every image ``files`` use.
    Returns what it tagged, each with what stands in for it."""
    docker = ["nsenter", "-t", str(vps.leader_pid), "-a", "docker"]
    tar = subprocess.Popen(["tar", "-C", str(standin_rootfs()), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    subprocess.run([*docker, "import", "-", BASE_TAG], stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL)
    if tar.wait() != 0:
        raise RuntimeError("tar of the stand-in root file system failed")
    tagged = []
    for name in compose_images(files):
        repo = name.rsplit("/", 1)[-1].split(":", 1)[0]
        cmd = '["nginx", "-g", "daemon off;"]' if repo == "nginx" else '["sleep", "infinity"]'
        subprocess.run(
            [*docker, "build", "-q", "-t", name, "-"],
            input=f"FROM {BASE_TAG}\nCMD {cmd}\n", text=True, check=True, stdout=subprocess.DEVNULL,
            env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )  # fmt: skip
        tagged.append(f"{name} ({'Debian nginx-light' if repo == 'nginx' else 'sleeps'})")
    return tagged
