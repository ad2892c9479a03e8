"""The tool catalog (seed §3.3, §5.1–5.3, §10.2) as validated data, loaded once per process."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from letsbe_contracts.enums import Tier

# The seed's §5.2 (OpenClaw 256 + Chromium 128 + Safety Wrapper 128 + Secrets Proxy 64 + nginx 64), except OpenClaw:
# the pinned release's gateway with its two helper processes was measured at about 1,080 MB at start-up (it was
# OOM-killed in the seed's 384 MB container on the Debian 12 test VPS), so it gets 1,152 MB.
LETSBE_OVERHEAD_MB = 1536

# What a server needs besides the tools' own disk: Debian, Docker images, LetsBe's stacks and logs.
BASE_DISK_GB = 20
# The tools' data grows, and backups are staged locally before they are uploaded: twice the tools' disk.
DISK_HEADROOM = 2
# CPU follows memory: one vCPU per 4 GB of memory budget, never fewer than two.
MB_PER_CPU, MIN_CPUS = 4096, 2

Port = Annotated[int, Field(ge=1, le=65535)]


@dataclass(frozen=True)
class ServerNeeds:
    """The smallest server an order's tools run on (docs/provisioning.md, "What a server must have")."""

    cpus: int
    ram_mb: int  # the memory budget: every container's limit plus the LetsBe overhead
    disk_gb: int


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Tool(_Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,40}$")]
    title: str
    ram_mb: Annotated[int, Field(gt=0)]  # the application itself (§5.3)
    stack_ram_mb: Annotated[int, Field(gt=0)]  # application + its database/redis (§3.3): the memory budget
    disk_gb: Annotated[int, Field(gt=0)]
    requires_db: Literal["postgres", "mysql", "mongo"] | None
    requires_redis: bool
    image: Annotated[str, StringConstraints(pattern=r"^[a-z0-9./_-]+:[A-Za-z0-9._-]+$")]
    container_port: Port | None
    host_port: Port | None  # bound on 127.0.0.1 of the tenant; nginx proxies the subdomain to it
    subdomain: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,62}$")] | None
    admin_only: bool = False
    system: bool = False  # infrastructure (certbot): no subdomain, not selectable by customers

    @model_validator(mode="after")
    def _consistent(self) -> Tool:
        if self.stack_ram_mb < self.ram_mb:
            raise ValueError(f"{self.name}: stack_ram_mb below ram_mb")
        if not self.system and (self.subdomain is None or self.host_port is None or self.container_port is None):
            raise ValueError(f"{self.name}: a customer tool needs a subdomain, host_port and container_port")
        return self


class OverheadComponent(_Strict):
    name: str
    ram_mb: Annotated[int, Field(gt=0)]
    cpu: Annotated[float, Field(gt=0)]
    image: str | None
    port: Port | None
    notes: str


class TierSpec(_Strict):
    tier: Tier
    ram_mb: Annotated[int, Field(gt=0)]
    cpu: Annotated[int, Field(gt=0)]
    disk_gb: Annotated[int, Field(gt=0)]
    recommended_tools: str
    netcup_plan: str
    netcup_monthly_eur: Annotated[float, Field(gt=0)]
    hetzner_type: Literal["cpx21", "cpx31", "cpx41", "cpx51"]
    hetzner_hourly_eur: Annotated[float, Field(gt=0)]
    hetzner_monthly_cap_eur: Annotated[float, Field(gt=0)]


class Catalog(_Strict):
    version: Literal[1]
    overhead: tuple[OverheadComponent, ...]
    tiers: tuple[TierSpec, ...]
    tools: tuple[Tool, ...]

    @model_validator(mode="after")
    def _unique_and_complete(self) -> Catalog:
        for label, values in (
            ("tool name", [t.name for t in self.tools]),
            ("subdomain", [t.subdomain for t in self.tools if t.subdomain]),
            ("host port", [t.host_port for t in self.tools if t.host_port] + [c.port for c in self.overhead if c.port]),
            ("tier", [t.tier for t in self.tiers]),
        ):
            dupes = {v for v in values if values.count(v) > 1}
            if dupes:
                raise ValueError(f"duplicate {label}: {sorted(map(str, dupes))}")
        if {t.tier for t in self.tiers} != set(Tier):
            raise ValueError("every tier needs a spec")
        if sum(c.ram_mb for c in self.overhead) != LETSBE_OVERHEAD_MB:
            raise ValueError(f"overhead must total {LETSBE_OVERHEAD_MB} MB (seed §5.2, OpenClaw as measured)")
        return self

    def tool(self, name: str) -> Tool:
        for t in self.tools:
            if t.name == name:
                return t
        raise KeyError(name)

    def tier(self, tier: Tier | str) -> TierSpec:
        return next(t for t in self.tiers if t.tier == Tier(tier))

    @property
    def selectable(self) -> tuple[Tool, ...]:
        return tuple(t for t in self.tools if not t.system)

    def needs(self, tool_names: Iterable[str], *, min_cpus: int | None = None) -> ServerNeeds:
        """What a server must have for these tools: preflight judges every server by it, and Hetzner overflow
        orders the cheapest type that has it. ``min_cpus`` overrides the CPUs derived from memory."""
        tools = [t for t in (self.tool(n) for n in tool_names) if not t.system]
        ram_mb = LETSBE_OVERHEAD_MB + sum(t.stack_ram_mb for t in tools)
        disk_gb = BASE_DISK_GB + DISK_HEADROOM * sum(t.disk_gb for t in tools)
        cpus = min_cpus if min_cpus is not None else max(MIN_CPUS, math.ceil(ram_mb / MB_PER_CPU))
        return ServerNeeds(cpus=cpus, ram_mb=ram_mb, disk_gb=disk_gb)

    def unknown(self, names: Iterable[str]) -> list[str]:
        """Names that are not selectable tools, in the order given: for error messages that name them."""
        known = {t.name for t in self.selectable}
        return [n for n in names if n not in known]


@cache
def load_catalog() -> Catalog:
    raw = resources.files("letsbe_contracts").joinpath("catalog.json").read_text(encoding="utf-8")
    return Catalog.model_validate(json.loads(raw))
