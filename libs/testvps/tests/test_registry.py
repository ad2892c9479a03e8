"""The test VPSes' registry storage keeps what the rendered compose files can pull, and nothing a rebuild replaced."""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import pytest

from letsbe_testvps import images
from letsbe_testvps.images import Image, Layer

pytestmark = pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs Debian's docker-registry")


def _layer(tmp: Path, content: bytes) -> Layer:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    blob = gzip.compress(raw.getvalue(), mtime=0)
    path = tmp / (hashlib.sha256(blob).hexdigest() + ".tar.gz")
    path.write_bytes(blob)
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    return Layer(path, "sha256:" + hashlib.sha256(blob).hexdigest(), diff_id)


def _blobs(storage: Path) -> set[str]:
    return {"sha256:" + p.parent.name for p in storage.glob("docker/registry/v2/blobs/sha256/*/*/data")}


def test_a_rebuilt_image_leaves_no_unreferenced_layer_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(images, "REGISTRY_STORAGE", tmp_path / "registry" / "storage")
    kept = _layer(tmp_path, b"the stand-ins' layer\n")
    first, second = _layer(tmp_path, b"build 1\n"), _layer(tmp_path, b"build 2\n")
    config = {"Cmd": ["true"]}

    images.publish({"registry.letsbe.test/agent:1": Image(config, (kept, first), "first build")})
    assert {kept.digest, first.digest} <= _blobs(images.REGISTRY_STORAGE)

    images.publish({"registry.letsbe.test/agent:1": Image(config, (kept, second), "rebuilt")})
    blobs = _blobs(images.REGISTRY_STORAGE)
    assert {kept.digest, second.digest} <= blobs
    assert first.digest not in blobs
