"""The ten steps of the pipeline (seed §3.1), in order. Names are the wire names of provisioning-step events."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    number: int
    name: str
    title: str


STEPS: tuple[Step, ...] = (
    Step(1, "preflight", "Check the server: Debian 12, CPU/RAM/disk of the tier"),
    Step(2, "base-system", "Packages, unattended upgrades, time sync, swap"),
    Step(3, "users-ssh", "Admin user, SSH hardening, fail2ban"),
    Step(4, "firewall", "Firewall: 22/80/443 only"),
    Step(5, "docker", "Docker engine and log rotation"),
    Step(6, "nginx", "nginx base configuration"),
    Step(7, "tls", "Wildcard TLS via DNS-01"),
    Step(8, "backups", "Nightly backups and backup-status.json"),
    Step(9, "tool-stacks", "Tool stacks and their subdomains"),
    Step(10, "ai-stack", "AI stack: OpenClaw, Safety Wrapper, Secrets Proxy"),
)
BY_NUMBER = {s.number: s for s in STEPS}
