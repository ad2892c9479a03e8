"""The Debian 12 image every test VPS boots from: built once with debootstrap, cached outside the repository.

The cache key is a hash of the recipe (suite, variant, packages, mirror, this module's version), so a changed
recipe builds a new image and never reuses a stale one. Two processes that need it at once: the first builds under
an exclusive lock, the second waits for it and uses the result. The image is used read-only, as the overlayfs lower
dir of each VPS: nothing in it is per-machine (no host keys, no machine id, no authorized keys).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(os.environ.get("LETSBE_TESTVPS_CACHE", "/var/cache/letsbe/testvps"))
SUITE = "bookworm"
RECIPE_VERSION = 1  # bump when the steps below change in a way the package list does not show

# What a provider's Debian 12 image (Hetzner, Netcup) has besides minbase. Nothing the provisioning steps install
# is here (cron, jq, ufw, fail2ban, docker, certbot, rclone …): the steps must really install those.
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "iproute2", "iputils-ping", "sudo", "ca-certificates",
    "curl", "wget", "gnupg", "procps", "python3", "less", "nano", "kmod", "lsb-release", "netbase", "apt-utils",
    "locales",
)  # fmt: skip


@dataclass(frozen=True)
class Mirror:
    debian: str  # e.g. http://deb.debian.org/debian
    security: str  # e.g. http://deb.debian.org/debian-security

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(sorted({re.sub(r"^https?://([^/:]+).*$", r"\1", u) for u in (self.debian, self.security)}))


def host_mirror(
    sources_dir: Path = Path("/etc/apt/sources.list.d"), sources_list: Path = Path("/etc/apt/sources.list")
) -> Mirror:
    """The Debian mirror this host itself uses (deb822 .sources files or one-line .list entries)."""
    uris: list[str] = []
    for f in sorted(sources_dir.glob("*.sources")):
        uris += re.findall(r"^URIs:\s*(\S+)", f.read_text(), re.M)
    for f in [sources_list, *sorted(sources_dir.glob("*.list"))]:
        if f.exists():
            uris += re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", f.read_text(), re.M)
    debian = next((u for u in uris if re.search(r"/debian/?$", u)), None)
    if debian is None:
        raise RuntimeError(f"no Debian mirror found in {sources_dir} or {sources_list}")
    security = next((u for u in uris if re.search(r"/debian-security/?$", u)), debian.rstrip("/") + "-security")
    return Mirror(debian.rstrip("/"), security.rstrip("/"))


def recipe_key(mirror: Mirror) -> str:
    recipe = {"suite": SUITE, "variant": "minbase", "packages": PACKAGES, "mirror": [mirror.debian, mirror.security],
              "version": RECIPE_VERSION}  # fmt: skip
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def ensure_image(mirror: Mirror | None = None, *, log=print) -> Path:
    """The cached image's root directory; builds it first if it is not there yet (about 3 minutes)."""
    mirror = mirror or host_mirror()
    key = recipe_key(mirror)
    rootfs = CACHE_DIR / key / "rootfs"
    if (CACHE_DIR / key / "complete").exists():
        return rootfs
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent builder finishes first; then we find its result
        if (CACHE_DIR / key / "complete").exists():
            return rootfs
        started = time.monotonic()
        log(f"building the Debian 12 test VPS image {key} from {mirror.debian} (one-off, a few minutes)")
        build = CACHE_DIR / f"{key}.build-{os.getpid()}"
        shutil.rmtree(build, ignore_errors=True)
        try:
            _build(build / "rootfs", mirror)
            shutil.rmtree(CACHE_DIR / key, ignore_errors=True)
            (build / "complete").write_text(f"{time.time():.0f}\n")
            build.rename(CACHE_DIR / key)
        finally:
            shutil.rmtree(build, ignore_errors=True)
        log(f"image {key} built in {time.monotonic() - started:.0f}s")
        for old in CACHE_DIR.iterdir():  # earlier recipes' images: no longer used by anyone
            if old.is_dir() and old.name != key and (old / "complete").exists():
                shutil.rmtree(old, ignore_errors=True)
    return rootfs


def _build(root: Path, mirror: Mirror) -> None:
    # dpkg without an fsync per unpacked file (a throw-away build: an interrupted one is removed); gone afterwards.
    unsafe_io = root / "etc/dpkg/dpkg.cfg.d/letsbe-testvps-unsafe-io"
    unsafe_io.parent.mkdir(parents=True)
    unsafe_io.write_text("force-unsafe-io\n")
    # The downloaded packages stay for the next build (a changed recipe): debootstrap checks them against the
    # mirror's index, so only what changed is downloaded again.
    debs = CACHE_DIR / "debootstrap-debs"
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", f"--cache-dir={debs}", SUITE,
         str(root), mirror.debian],
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    unsafe_io.unlink()
    (root / "etc/apt/sources.list").write_text(
        f"deb {mirror.debian} {SUITE} main\n"
        f"deb {mirror.debian} {SUITE}-updates main\n"
        f"deb {mirror.security} {SUITE}-security main\n"
    )
    for f in root.glob("var/lib/apt/lists/*_Packages"):
        f.unlink()  # apt-get update inside fetches fresh lists, as on a provider's image
    for f in root.glob("etc/ssh/ssh_host_*"):
        f.unlink()  # each VPS gets its own host keys at boot (vps.py)
    (root / "etc/machine-id").write_text("")  # systemd makes one per boot
    (root / "etc/hostname").write_text("debian\n")
    (root / "etc/locale.gen").write_text("en_US.UTF-8 UTF-8\n")
    subprocess.run(["chroot", str(root), "locale-gen"], check=True, stdout=subprocess.DEVNULL)
    (root / "etc/default/locale").write_text("LANG=en_US.UTF-8\n")
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)
