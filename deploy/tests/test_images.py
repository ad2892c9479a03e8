"""The Dockerfiles: hadolint-clean, multi-stage from the lock, non-root, health-checked; base images pinnable."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((REPO / "deploy" / "docker").glob("*.Dockerfile"))
# dockerfile -> (workspace package, module run, port, env prefix)
SERVICES = {
    "hub-api": ("letsbe-hub", "letsbe_hub", 3847, "LETSBE_HUB_"),
    "provisioner": ("letsbe-provisioner", "letsbe_provisioner", 3850, "LETSBE_PROVISIONER_"),
    "dns": ("letsbe-dns", "letsbe_dns", 3851, "LETSBE_DNS_"),
    "monitor": ("letsbe-monitor", "letsbe_monitor", 3852, "LETSBE_MONITOR_"),
    "safety-wrapper": ("letsbe-safety-wrapper", "letsbe_safety_wrapper", 8200, "LETSBE_SW_"),
    "secrets-proxy": ("letsbe-secrets-proxy", "letsbe_secrets_proxy", 8100, "LETSBE_SP_"),
}
BUILD_TOOLS = re.compile(r"\b(apt-get|apk|gcc|build-essential|pip install|uv (sync|pip))\b")


def instructions(path: Path) -> list[str]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            out.append(current.strip())
            current = ""
    return out


def stages(path: Path) -> list[list[str]]:
    out: list[list[str]] = []
    for ins in instructions(path):
        if ins.startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def arg_default(path: Path, name: str) -> str:
    (value,) = [i.split("=", 1)[1] for i in instructions(path) if i.startswith(f"ARG {name}=")]
    return value


def test_every_service_has_a_dockerfile():
    assert {p.name.removesuffix(".Dockerfile") for p in DOCKERFILES} == {*SERVICES, "migrate", "backup", "openclaw"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(kit, dockerfile):
    linted = subprocess.run(
        [kit.tool("hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True, check=False, timeout=60
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_hadolint_does_flag_a_bad_dockerfile(kit, tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install gcc\nRUN cd /app && pip install uv\n")
    linted = subprocess.run([kit.tool("hadolint"), str(bad)], capture_output=True, text=True, check=False, timeout=60)
    assert linted.returncode != 0
    assert {"DL3007", "DL3008", "DL3003"} <= set(re.findall(r"DL\d{4}", linted.stdout))


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_image_is_built_from_the_lock_and_runs_as_uid_1001_with_a_healthcheck(service):
    package, module, port, prefix = SERVICES[service]
    builder, final = stages(REPO / "deploy" / "docker" / f"{service}.Dockerfile")
    assert builder[0] == "FROM ${PYTHON_IMAGE} AS builder"
    assert any(f"uv sync --frozen --no-dev --package {package} " in i for i in builder)

    assert final[0] == "FROM ${PYTHON_IMAGE}"
    assert not [i for i in final if BUILD_TOOLS.search(i)], "build tools in the final stage"
    copies = [i for i in final if i.startswith("COPY ")]
    assert copies and all(i.startswith("COPY --from=builder ") for i in copies)
    assert any("useradd" in i and "--uid 1001" in i for i in final)
    assert "USER 1001:1001" in final
    assert f"EXPOSE {port}" in final
    env = " ".join(i for i in final if i.startswith("ENV "))
    assert f"{prefix}HOST=0.0.0.0" in env and f"{prefix}PORT={port}" in env
    (health,) = [i for i in final if i.startswith("HEALTHCHECK ")]
    assert '"python"' in health and f"{prefix}PORT" in health and "/healthz" in health and "curl" not in health
    assert final[-1] == f'CMD ["python", "-m", "{module}"]'


def test_migrate_and_backup_images_are_one_shot_jobs_as_uid_1001():
    for name, command in [("migrate", 'CMD ["letsbe-migrate"]'), ("backup", 'CMD ["backup.sh"]')]:
        final = stages(REPO / "deploy" / "docker" / f"{name}.Dockerfile")[-1]
        assert "USER 1001:1001" in final and "HEALTHCHECK NONE" in final and final[-1] == command, name


def test_python_images_share_one_base_and_the_makefiles_uv():
    python = [p for p in DOCKERFILES if p.name not in ("backup.Dockerfile", "openclaw.Dockerfile")]
    bases = {arg_default(p, "PYTHON_IMAGE").split("@")[0] for p in python}
    assert bases == {"python:3.12-slim-bookworm"}
    make_uv = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert {arg_default(p, "UV_VERSION") for p in python} == {make_uv}
    assert arg_default(REPO / "deploy" / "docker" / "backup.Dockerfile", "POSTGRES_IMAGE").startswith("postgres:16")


def test_openclaw_image_is_the_tested_release_on_node_24_as_a_non_root_user():
    """Seed §4.3 on the npm release the provisioner's rendered configuration is tested against."""
    from letsbe_provisioner.rendering.plan import OPENCLAW_CONFIG, OPENCLAW_PORT, OPENCLAW_VERSION

    dockerfile = REPO / "deploy" / "docker" / "openclaw.Dockerfile"
    (final,) = stages(dockerfile)
    assert final[0] == "FROM ${NODE_IMAGE}"
    node_image = arg_default(dockerfile, "NODE_IMAGE")
    assert re.fullmatch(r"node:24\.\d+\.\d+-bookworm-slim(@sha256:[0-9a-f]{64})?", node_image)
    assert arg_default(dockerfile, "OPENCLAW_VERSION") == OPENCLAW_VERSION
    assert any('npm install --global' in i and '"openclaw@${OPENCLAW_VERSION}"' in i for i in final)
    assert any("apt-get install" in i and " curl " in i and " jq" in i for i in final)  # seed §4.3
    assert not [i for i in final if re.search(r"\b(gog|himalaya)\b", i)], "CLIs that would go around the gate"
    assert any("useradd" in i and "--uid 1002" in i and "/home/openclaw" in i for i in final)
    assert all(d in " ".join(final) for d in ("agents", "skills", "references", "data", "shared-memory"))
    assert "USER 1002:1002" in final and f"EXPOSE {OPENCLAW_PORT}" in final
    env = " ".join(i for i in final if i.startswith("ENV "))
    assert f"OPENCLAW_CONFIG_PATH={OPENCLAW_CONFIG}" in env and "OPENCLAW_CONFIG_READONLY=1" in env
    (health,) = [i for i in final if i.startswith("HEALTHCHECK ")]
    assert f"127.0.0.1:{OPENCLAW_PORT}/healthz" in health
    assert final[-1] == 'CMD ["openclaw", "gateway", "run"]'
    copies = [i.split()[1:] for i in final if i.startswith("COPY ")]
    assert copies == [["deploy/docker/openclaw/skills", "/opt/letsbe/openclaw/skills"]]
    template = REPO / "services/provisioner/src/letsbe_provisioner/templates/openclaw/openclaw.json.j2"
    assert '"extraDirs": ["/opt/letsbe/openclaw/skills"]' in template.read_text()  # the rendered config loads it
    skill = (REPO / "deploy/docker/openclaw/skills/letsbe-tools/SKILL.md").read_text()
    assert skill.startswith("---\nname: letsbe-tools\n") and "/api/v1/tools/execute" in skill


# --- pin-images.sh ------------------------------------------------------------------------------------------


def pin(kit, root: Path, *args: str, path: str = "/usr/bin:/bin") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(kit.deploy / "pin-images.sh"), *args],
        env={"PIN_IMAGES_ROOT": str(root), "PATH": path},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_pin_check_sees_every_third_party_image_in_the_repository(kit):
    checked = pin(kit, kit.deploy, "--check")
    listed = re.findall(r"^(pinned|unpinned): \S+ (\S+)$", checked.stdout, re.M)
    # Found independently: the *_IMAGE build args of every Dockerfile, and compose images we do not build.
    expected = {
        arg_default(p, n)
        for p in DOCKERFILES
        for n in ("PYTHON_IMAGE", "POSTGRES_IMAGE", "NODE_IMAGE")
        if f"ARG {n}=" in p.read_text()
    }
    doc = yaml.safe_load((kit.hub / "compose.yaml").read_text())
    expected |= {s["image"] for s in doc["services"].values() if "${" not in s["image"]}
    assert {ref for _, ref in listed} == expected
    assert {ref.split("@")[0] for ref in expected} >= {"python:3.12-slim-bookworm", "postgres:16-bookworm"}
    assert checked.returncode == (1 if any(state == "unpinned" for state, _ in listed) else 0)


def test_pin_writes_digests_in_place_and_check_then_passes(kit, tmp_path):
    root = tmp_path / "deploy"
    (root / "docker").mkdir(parents=True)
    (root / "hub").mkdir()
    (root / "docker" / "x.Dockerfile").write_text("ARG PYTHON_IMAGE=python:3.12-slim-bookworm\nFROM ${PYTHON_IMAGE}\n")
    (root / "hub" / "compose.yaml").write_text(
        "services:\n  db:\n    image: postgres:16-bookworm\n  app:\n    image: ${REGISTRY}/app:${VERSION}\n"
    )
    # A stand-in for `docker buildx imagetools inspect` (no registry here): a digest derived from the tag.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text(
        '#!/bin/sh\n[ "$1 $2 $3" = "buildx imagetools inspect" ] || exit 9\n'
        'printf "sha256:%s\\n" "$(printf %s "$4" | sha256sum | cut -c1-64)"\n'
    )
    (fake / "docker").chmod(0o755)

    before = pin(kit, root, "--check")
    assert before.returncode == 1
    assert "0 pinned, 2 unpinned" in before.stdout

    pinned = pin(kit, root, path=f"{fake}:/usr/bin:/bin")
    assert pinned.returncode == 0, pinned.stderr

    digest = subprocess.run(["sha256sum"], input="postgres:16-bookworm", capture_output=True, text=True).stdout[:64]
    assert f"    image: postgres:16-bookworm@sha256:{digest}\n" in (root / "hub" / "compose.yaml").read_text()
    assert "${REGISTRY}/app:${VERSION}" in (root / "hub" / "compose.yaml").read_text()  # ours: left alone
    assert re.search(
        r"^ARG PYTHON_IMAGE=python:3\.12-slim-bookworm@sha256:[0-9a-f]{64}$",
        (root / "docker" / "x.Dockerfile").read_text(),
        re.M,
    )
    after = pin(kit, root, "--check")
    assert after.returncode == 0 and "2 pinned, 0 unpinned" in after.stdout
    # Re-pinning refreshes the digest instead of stacking a second one.
    again = pin(kit, root, path=f"{fake}:/usr/bin:/bin")
    assert again.returncode == 0
    assert (root / "hub" / "compose.yaml").read_text().count("@sha256:") == 1
