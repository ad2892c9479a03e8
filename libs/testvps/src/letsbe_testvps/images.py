"""Locally built images for the containers a tenant pulls (Docker Hub and our registry are unreachable).

One root file system, built once from the cached Debian 12 image plus Debian's nginx, is the stand-ins' one layer
(and the bottom layer of the real AI images, ``agent_images``). ``publish`` pushes images to a registry storage
cached next to the image, under every name the rendered compose files use. Each VPS gets Debian's
``docker-registry`` serving that storage on the host end of its link; the provisioner's ``registry_mirror`` (Docker
Hub names) and ``image_registry`` (our AI images) settings point the VPS's dockerd at it, so the steps pull for real:

- ``nginx:*``: Debian's nginx-light (``nginx -g 'daemon off;'``, an ``nginx`` user as the official image has), so
  step 6 and every ``nginx -t`` / reload really run against the rendered configuration;
- the tools' images: a plain HTTP listener on the tool's own port (``python3 -m http.server``), so networks,
  published ports, mounts and memory limits are real and a port probe means something, but the application is not;
  images without a known port (databases, caches) only sleep (PostgreSQL has a real image: ``agent_images``);
- the AI stack (Safety Wrapper, Secrets Proxy, OpenClaw): real images, ``agent_images``.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import httpx

from letsbe_platform.testing import eventually_blocking, free_port
from letsbe_platform.tls import client_context
from letsbe_testvps.image import CACHE_DIR, ensure_image, host_mirror, recipe_key

STANDIN_PACKAGES = ("nginx-light",)
REGISTRY_STORAGE = CACHE_DIR / "registry" / "storage"  # what the per-VPS registries serve (shared, read-mostly)
REGISTRY_PORT = 5000


class _File(Protocol):
    path: str
    content: str


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
            nologin = ["--no-create-home", "--shell", "/usr/sbin/nologin"]
            subprocess.run([*chroot, "useradd", "--system", *nologin, "nginx"], check=True)
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


@dataclass(frozen=True)
class Layer:
    path: Path  # layer.tar.gz
    digest: str  # of the gzip blob
    diff_id: str  # of the uncompressed tar


@dataclass(frozen=True)
class Image:
    """An image to push: its configuration's ``config`` part (Cmd, Env, User, Healthcheck, ...) and its layers."""

    config: dict
    layers: tuple[Layer, ...]  # bottom first
    what: str  # what it is, for the test's report
    built_seconds: float = 0.0  # time spent building it in this process (0: from the cache)


def layer_of(directory: Path) -> Layer:
    """The layer kept in ``directory`` (``layer.tar.gz`` and its digests in ``layer.json``)."""
    m = json.loads((directory / "layer.json").read_text())
    return Layer(directory / "layer.tar.gz", m["digest"], m["diff_id"])


def standin_layer() -> Layer:
    """The stand-in root file system as one gzip layer (written once, next to it)."""
    rootfs = standin_rootfs()
    layer = rootfs.parent / "layer.tar.gz"
    meta = rootfs.parent / "layer.json"
    if not meta.exists():
        with open(rootfs.parent / "layer.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not meta.exists():
                tmp = layer.with_suffix(".tmp")
                tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
                assert tar.stdout is not None
                diff, blob = hashlib.sha256(), hashlib.sha256()
                with open(tmp, "wb") as out, gzip.GzipFile(fileobj=Hashing(out, blob), mode="wb", compresslevel=1,
                                                          mtime=0) as gz:  # fmt: skip
                    while chunk := tar.stdout.read(1 << 20):
                        diff.update(chunk)
                        gz.write(chunk)
                if tar.wait() != 0:
                    raise RuntimeError("tar of the stand-in root file system failed")
                tmp.rename(layer)
                meta.write_text(
                    json.dumps({"digest": "sha256:" + blob.hexdigest(), "diff_id": "sha256:" + diff.hexdigest()})
                )
    return layer_of(rootfs.parent)


class Hashing:
    """A file object that hashes what is written through it."""

    def __init__(self, out: BinaryIO, h: hashlib._Hash):
        self.out, self.h = out, h

    def write(self, data: bytes) -> int:
        self.h.update(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


def standin(name: str, port: int | None = None) -> Image:
    """The stand-in for image ``name``: Debian's nginx for nginx, else a container that only sleeps or, given the
    port the application serves on, a plain HTTP listener on it (so that a closed port means unreachable, not
    "nothing there")."""
    if _repo(name).rsplit("/", 1)[-1] == "nginx":
        return Image({"Cmd": ["nginx", "-g", "daemon off;"]}, (standin_layer(),), "Debian nginx-light")
    if port is not None:
        listen = ["python3", "-m", "http.server", "--bind", "0.0.0.0", str(port)]  # noqa: S104 - in its container
        cmd, what = listen, f"listens on {port}"
    else:
        cmd, what = ["sleep", "infinity"], "sleeps"
    # As PID 1 it ignores SIGTERM, so `docker stop` (a backup's, a removal's) would wait its 10 s; it keeps nothing
    # to save, so it stops at once.
    return Image({"Cmd": cmd, "StopSignal": "SIGKILL"}, (standin_layer(),), what)


def _repo(name: str) -> str:
    """registry-relative repository of an image name (Docker Hub's library/ for bare names), without the tag."""
    path = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    first = path.split("/", 1)[0]
    if "/" in path and ("." in first or ":" in first):  # a registry host: ours serves the rest of the path
        path = path.split("/", 1)[1]
    return path if "/" in path else f"library/{path}"


def publish(wanted: dict[str, Image]) -> list[str]:
    """Make the registry storage hold every image in ``wanted`` (name -> image); returns "name (what it is)"."""
    REGISTRY_STORAGE.mkdir(parents=True, exist_ok=True)
    with open(REGISTRY_STORAGE.parent / "registry.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with (
            _registry("127.0.0.1", free_port()) as url,
            httpx.Client(base_url=url, timeout=300, verify=client_context()) as http,
        ):
            pushed: dict[str, str] = {}  # layer digest -> a repository that has it (to mount from)
            for name, image in wanted.items():
                repo, tag = _repo(name), name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
                for layer in image.layers:
                    if http.head(f"/v2/{repo}/blobs/{layer.digest}").status_code != 200:
                        if layer.digest in pushed:
                            http.post(f"/v2/{repo}/blobs/uploads/",
                                      params={"mount": layer.digest, "from": pushed[layer.digest]})  # fmt: skip
                        if http.head(f"/v2/{repo}/blobs/{layer.digest}").status_code != 200:
                            with open(layer.path, "rb") as f:
                                _upload(http, repo, layer.digest, f)
                    pushed[layer.digest] = repo
                config = json.dumps({
                    "architecture": "amd64", "os": "linux", "config": image.config,
                    "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in image.layers]},
                    "history": [{"created_by": f"letsbe-testvps: {image.what}"}],
                }).encode()  # fmt: skip
                config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
                _upload(http, repo, config_digest, config)
                manifest = json.dumps({
                    "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                               "digest": config_digest},
                    "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                "size": layer.path.stat().st_size, "digest": layer.digest} for layer in image.layers],
                })  # fmt: skip
                kind = {"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"}
                http.put(f"/v2/{repo}/manifests/{tag}", content=manifest, headers=kind).raise_for_status()
        _collect_garbage()
    return [f"{n} ({image.what})" for n, image in wanted.items()]


def _collect_garbage() -> None:
    """Drop what no tag names any more (each rebuild of an agent image re-tags it: ~40 MB left behind otherwise).
    Called under the publish lock with no registry of ours writing; the per-VPS registries only read."""
    config = REGISTRY_STORAGE.parent / "gc.yml"
    config.write_text(f"version: 0.1\nstorage: {{filesystem: {{rootdirectory: {REGISTRY_STORAGE}}}}}\n")
    subprocess.run(["docker-registry", "garbage-collect", "--delete-untagged", str(config)],
                   check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=600)  # fmt: skip


def _upload(http: httpx.Client, repo: str, digest: str, data: bytes | BinaryIO) -> None:
    if http.head(f"/v2/{repo}/blobs/{digest}").status_code == 200:
        return
    start = http.post(f"/v2/{repo}/blobs/uploads/")
    start.raise_for_status()
    location = start.headers["Location"]  # carries the upload's state in its query: append, do not replace
    http.put(f"{location}{'&' if '?' in location else '?'}digest={digest}", content=data,
             headers={"Content-Type": "application/octet-stream"}).raise_for_status()  # fmt: skip


def start_registry(host: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """Debian's docker-registry serving the stand-ins' storage on host:port (plain HTTP)."""
    REGISTRY_STORAGE.mkdir(parents=True, exist_ok=True)
    config = log.with_suffix(".yml")
    config.write_text(
        f"version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {REGISTRY_STORAGE}}}}}\n"
        f"http: {{addr: '{host}:{port}'}}\n"
    )
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=open(log, "wb"), start_new_session=True)  # fmt: skip

    def listening() -> bool:
        assert proc.poll() is None, f"exited with {proc.returncode}"
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return True
        return False

    try:
        eventually_blocking(listening, f"docker-registry on {host}:{port}", timeout=20)
    except AssertionError as exc:
        proc.kill()
        raise RuntimeError(f"{exc}: {log.read_text()[-500:]}") from None
    return proc


@contextlib.contextmanager
def _registry(host: str, port: int) -> Iterator[str]:
    log = REGISTRY_STORAGE.parent / f"registry-{port}.log"
    proc = start_registry(host, port, log)
    try:
        yield f"http://{host}:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.unlink(missing_ok=True)
        log.with_suffix(".yml").unlink(missing_ok=True)
