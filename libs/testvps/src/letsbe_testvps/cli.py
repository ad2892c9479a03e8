"""letsbe-testvps boot|stop|shell|list: a Debian 12 test VPS by hand (the same one the tests boot)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="letsbe-testvps", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("boot", help="boot a fresh VPS; it runs until `stop`")
    b.add_argument("--key", type=Path, default=Path.home() / ".ssh/id_ed25519.pub", help="public key root accepts")
    s = sub.add_parser("stop", help="kill and remove a VPS (its disk is thrown away: no clean shutdown)")
    s.add_argument("name", nargs="?")
    s.add_argument("--all", action="store_true", help="every test VPS on this machine")
    sh = sub.add_parser("shell", help="a root shell inside (nsenter; works even when SSH is locked down)")
    sh.add_argument("name")
    sub.add_parser("list", help="the VPSes running now")
    args = parser.parse_args(argv)
    # After the arguments: `--help` answers without importing asyncssh and the rest (seconds).
    from letsbe_testvps.vps import VpsError, boot, load, running, sweep

    try:
        if args.cmd == "boot":
            if not args.key.exists():
                parser.error(f"no public key at {args.key} (--key FILE)")
            vps = boot(args.key.read_text(), owner_pid=0)
            print(f"{vps.name}: ssh root@{vps.ip}  (host key {vps.host_key_fingerprint}; host end {vps.host_ip})")
        elif args.cmd == "stop":
            if args.all:
                sweep(everything=True)
            elif args.name:
                load(args.name).stop()
            else:
                parser.error("stop NAME or stop --all")
        elif args.cmd == "shell":
            vps = load(args.name)
            os.execvp("nsenter", ["nsenter", "-t", str(vps.leader_pid), "-a", "/bin/bash", "-l"])  # noqa: S606
        else:
            for name in running():
                try:
                    v = load(name)
                    print(f"{name}\t{v.ip}\towner pid {v.owner_pid or '-'}")
                except VpsError:
                    print(f"{name}\t(starting or broken)")
    except VpsError as exc:
        print(f"letsbe-testvps: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
