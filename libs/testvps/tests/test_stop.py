"""Stopping a VPS returns only once its processes are gone from the host: a process whose command line has emptied
is still there until its parent collects it (a VPS's PID 1 is nspawn's to collect, not ours)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

from letsbe_platform.testing import eventually
from letsbe_testvps.vps import _end

# A parent that is not us: it forks a child that exits at once and collects it only when told to.
PARENT = """
import os, sys
child = os.fork()
if child == 0:
    os._exit(0)
print(child, flush=True)
sys.stdin.readline()
os.waitpid(child, 0)
sys.stdin.readline()
"""


async def test_ending_a_process_another_process_collects_returns_only_once_it_is_gone() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())  # type: ignore[union-attr]
        await eventually(lambda: "\nState:\tZ" in Path(f"/proc/{child}/status").read_text(), what="a zombie child")

        def collect() -> None:
            parent.stdin.write("collect\n")  # type: ignore[union-attr]
            parent.stdin.flush()  # type: ignore[union-attr]

        later = threading.Timer(0.3, collect)  # only orders "after _end began": a slow machine cannot fail this
        later.start()
        await asyncio.to_thread(_end, child, "anything", timeout=5)
        assert not await asyncio.to_thread(Path(f"/proc/{child}").exists)
        later.join()
    finally:
        parent.kill()
        parent.wait()
