"""The parts of the AI images' build that need no test VPS: the image configuration read from the Dockerfiles, and
an overlay upper dir written as an image layer (deletions as whiteout files)."""

from __future__ import annotations

import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from letsbe_testvps.agent_images import DEFAULT_PATH, _write_layer, dockerfile_config

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("agent", "module", "port"), [("safety-wrapper", "letsbe_safety_wrapper", 8200),
                                                       ("secrets-proxy", "letsbe_secrets_proxy", 8100)])  # fmt: skip
def test_an_agent_image_starts_as_its_dockerfile_says(agent: str, module: str, port: int):
    config = dockerfile_config(REPO / "deploy/docker" / f"{agent}.Dockerfile")
    assert config["Cmd"] == ["python", "-m", module]
    assert config["User"] == "1001:1001" and config["WorkingDir"] == "/app"
    assert config["ExposedPorts"] == {f"{port}/tcp": {}}
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["PATH"] == f"/app/.venv/bin:{DEFAULT_PATH}"  # $PATH expanded as Docker does
    assert env[f"LETSBE_{'SW' if agent == 'safety-wrapper' else 'SP'}_PORT"] == str(port)
    check = config["Healthcheck"]
    assert check["Test"][:3] == ["CMD", "python", "-S"]
    assert (check["Interval"], check["Timeout"], check["StartPeriod"], check["Retries"]) == (15e9, 5e9, 30e9, 3)


def test_the_openclaw_image_starts_its_gateway_as_the_openclaw_user():
    config = dockerfile_config(REPO / "deploy/docker/openclaw.Dockerfile")
    assert config["Cmd"] == ["openclaw", "gateway", "run"] and config["User"] == "1002:1002"
    assert "OPENCLAW_CONFIG_PATH=/etc/openclaw/openclaw.json" in config["Env"]
    assert config["Healthcheck"]["Test"][:2] == ["CMD", "node"]


@pytest.mark.skipif(os.geteuid() != 0, reason="overlayfs' whiteouts (a 0/0 device, a trusted.* xattr) need root")
def test_a_deleted_file_and_an_opaque_directory_become_whiteouts_in_the_layer(tmp_path: Path):
    upper = tmp_path / "upper"
    (upper / "etc/fresh").mkdir(parents=True)
    (upper / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    os.mknod(upper / "etc/gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))  # how overlayfs records a deletion
    os.setxattr(upper / "etc/fresh", "trusted.overlay.opaque", b"y")
    tree = tmp_path / "modules"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg/index.js").write_text("module.exports = 1\n")
    (upper / "usr/lib/modules").mkdir(parents=True)  # the empty mount point the tree replaces
    _write_layer(upper, tmp_path, {"usr/lib/modules": tree})
    with tarfile.open(tmp_path / "layer.tar.gz") as tar:
        names = tar.getnames()
    assert "etc/.wh.gone" in names and "etc/gone" not in names
    assert "etc/fresh/.wh..wh..opq" in names
    assert names.count("usr/lib/modules") == 1 and "usr/lib/modules/pkg/index.js" in names
    meta = json.loads((tmp_path / "layer.json").read_text())
    assert meta["digest"].startswith("sha256:") and meta["diff_id"] != meta["digest"]
