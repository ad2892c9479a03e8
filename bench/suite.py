"""Wall time of the test suite without the Debian 12 VPS tests, per top-level test directory.

Run: .venv/bin/letsbe-devstack run -- .venv/bin/python bench/suite.py [-n 2] [--stress] [DIR ...]

One pytest run per directory (``-m "not vps" -n N``), one after the other against the same Postgres and NATS, so
each directory's figure is its own wall time and the sum is close to the whole suite's. ``--stress`` runs
``stress --cpu 2`` beside the runs (the steadiness check). Prints a table of seconds, tests and failures per
directory and the slowest tests (set-up + call + tear-down, from each run's JUnit XML); ``--json`` writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def directories() -> list[str]:
    found = [str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("services/*/tests"))]
    found.append("libs")  # the libraries' tests are small: one run for all of them
    found += [str(p.relative_to(ROOT)) for p in sorted((ROOT / "tests").iterdir()) if p.is_dir()]
    found.append("deploy/tests")
    return [d for d in found if not d.endswith("__pycache__")]


def run(directory: str, workers: int, junit: Path) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-m", "not vps", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    cmd += ["-n", str(workers)] if workers else []
    started = time.monotonic()
    proc = subprocess.run([*cmd, directory], cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - started
    tests = 0
    failed: list[str] = []
    durations: dict[str, float] = defaultdict(float)
    if junit.exists():
        for case in ET.parse(junit).iter("testcase"):  # noqa: S314 (our own pytest wrote it)
            name = f"{case.get('classname')}::{case.get('name')}"
            durations[name] += float(case.get("time") or 0)
            if case.find("skipped") is None:
                tests += 1
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(name)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    return {
        "dir": directory,
        "seconds": round(seconds, 1),
        "tests": tests,
        "failed": failed,
        "summary": summary,
        "durations": durations,
        "rc": proc.returncode,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--workers", type=int, default=2)
    parser.add_argument("--stress", action="store_true", help="run `stress --cpu 2` beside the suite")
    parser.add_argument("--slowest", type=int, default=25)
    parser.add_argument("--json", type=Path)
    parser.add_argument("dirs", nargs="*")
    args = parser.parse_args()
    if not (os.environ.get("DATABASE_URL") and os.environ.get("NATS_URL")):
        sys.exit("run under `letsbe-devstack run --` so that every directory shares one Postgres and NATS")
    stress = None
    if args.stress:  # its own process group: stress forks a worker per CPU, all are stopped together
        stress = subprocess.Popen(["stress", "--cpu", "2"], stdout=subprocess.DEVNULL, start_new_session=True)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i, d in enumerate(args.dirs or directories()):
                r = run(d, args.workers, Path(tmp) / f"{i}.xml")
                print(
                    f"{r['seconds']:8.1f} s  {r['tests']:5d} tests  {len(r['failed']):3d} failed  {d}  ({r['summary']})"
                )
                for name in r["failed"]:
                    print(f"           failed: {name}")
                sys.stdout.flush()
                results.append(r)
    finally:
        if stress:
            os.killpg(stress.pid, signal.SIGTERM)
            stress.wait()
    total = sum(r["seconds"] for r in results)
    print(
        f"{total:8.1f} s  {sum(r['tests'] for r in results):5d} tests  "
        f"{sum(len(r['failed']) for r in results):3d} failed  in all"
    )
    slow = sorted(((t, n) for r in results for n, t in r["durations"].items()), reverse=True)[: args.slowest]
    print("\nslowest tests (set-up + call + tear-down):")
    for t, n in slow:
        print(f"{t:8.2f} s  {n}")
    if args.json:
        args.json.write_text(json.dumps({"total": total, "results": results}, indent=1))


if __name__ == "__main__":
    main()
