"""Start a tenant agent process with the memory limit of its compose service.

This version only starts the process (``subprocess.Popen``); the limit is passed on so that a stricter version
(cgroup enforcement) can replace the body without changing a caller.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], mem_limit_mb: int | None, log_path: Path
) -> subprocess.Popen[bytes]:
    """``argv`` with exactly ``env``, stdout and stderr appended to ``log_path``, in its own session."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(list(argv), env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
