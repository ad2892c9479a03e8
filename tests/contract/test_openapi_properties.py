"""Property-based requests (schemathesis) over every service's published OpenAPI, against the real processes of the
whole control plane: valid and invalid input, with valid credentials so requests get past authentication. Whatever
is sent, no answer may be a 5xx, nor a status code the operation does not document.

The budget is bounded (``LETSBE_CONTRACT_EXAMPLES`` examples per operation and generation mode, default 12) and the
generation is derandomized, so `make test` is reproducible; raise the number locally to search harder.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import FlakyFailure, Unsatisfiable
from schemathesis import GenerationMode

from hub_testing.tenants import enroll, mint_token
from letsbe_platform.bus import Bus
from letsbe_platform.runner import SERVICES
from letsbe_platform.testing import free_port
from letsbe_platform.testing.processes import ServiceProcess
from letsbe_sandbox.plane import ControlPlane
from letsbe_sandbox.world import Ports, Sandbox

EXAMPLES = int(os.environ.get("LETSBE_CONTRACT_EXAMPLES", "12"))
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
STREAMS = ("/events",)  # SSE: they stream until the client leaves (their bad input is covered in test_bad_input)


@pytest_asyncio.fixture
async def plane(tmp_path: Path, service_env: dict[str, str], bus: Bus) -> AsyncIterator[ControlPlane]:
    ports = Ports(*(free_port() for _ in fields(Ports)))
    world = Sandbox(tmp_path / "sandbox", ports).start()
    cp = ControlPlane(world, {**service_env, "LETSBE_SANDBOX_DIR": str(tmp_path / "sandbox")}, bus)
    try:
        await cp.start(*(s.name for s in SERVICES))
        # The tenant agents: one pair, as a tenant runs them (registered with this hub by the test).
        for name, proc in agent_processes(world, tmp_path / "tenant").items():
            cp.procs[name] = proc.start()
        await asyncio.gather(*(cp.procs[n].wait_ready(60) for n in AGENTS))
        yield cp
    finally:
        cp.stop_all()
        world.stop()


AGENTS = {
    "safety-wrapper": ("letsbe_safety_wrapper", "LETSBE_SW_"),
    "secrets-proxy": ("letsbe_secrets_proxy", "LETSBE_SP_"),
}


# The keys a provisioned tenant's agents get from their rendered env files (here: made up for this test's pair).
TENANT_KEYS = {
    "tools_token": secrets.token_urlsafe(24),
    "sentinel_key": "lb-sentinel-" + secrets.token_urlsafe(16),
    "secrets_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),  # a Fernet key
}


def agent_processes(world: Sandbox, home: Path) -> dict[str, ServiceProcess]:
    shared = {"SECRETS_PATH": str(home / "secrets" / "secrets.enc"), "SECRETS_KEY": TENANT_KEYS["secrets_key"],
              "USAGE_LEDGER_PATH": str(home / "shared" / "usage.sqlite3")}
    own = {
        "safety-wrapper": {"TOOLS_TOKEN": TENANT_KEYS["tools_token"],
                           "TOOLS_DIR": str(home / "safety-wrapper" / "tools")},
        "secrets-proxy": {"SENTINEL_KEY": TENANT_KEYS["sentinel_key"], "UPSTREAM_BASE_URL": world.urls["llm"] + "/v1",
                          "UPSTREAM_API_KEY": world.material.llm_upstream_key},
    }
    procs = {}
    for name, (module, prefix) in AGENTS.items():
        env = {"HUB_URL": world.hub_url, "STATE_DIR": str(home / name),
               "REGISTRATION_TOKEN_FILE": str(home / name / "registration-token"), **shared, **own[name]}
        procs[name] = ServiceProcess(module, {prefix + k: v for k, v in env.items()}, port_env=prefix + "PORT",
                                     tenant_side=True)
    return procs


def _credentials(plane: ControlPlane, agent_key: str) -> dict[str, Any]:
    """Which bearer each service (and, on the hub, each API) expects."""
    m = plane.world.material
    return {
        "hub-api": lambda path: agent_key if path.startswith("/api/v1/tenant/") else m.admin_token,
        "dns": lambda path: m.dns_read_token if path.startswith("/api/v1/admin/") else agent_key,
        "provisioner": lambda path: m.admin_token,
        "monitor": lambda path: m.admin_token,
        "safety-wrapper": lambda path: TENANT_KEYS["tools_token"],
        "secrets-proxy": lambda path: TENANT_KEYS["sentinel_key"],
    }


def check_operation(
    name: str, base_url: str, operation: Any, mode: GenerationMode, bearer: str, documented: set[str]
) -> tuple[int, str]:
    """Up to EXAMPLES generated requests to one operation; returns (requests sent, the first 5xx or undocumented
    status found, or "")."""
    sent = 0
    session = requests.Session()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the first 5xx is reported as it is
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        nonlocal sent
        if isinstance(case.query, dict) and "wait" in case.query:
            case.query["wait"] = 0  # the command long-poll: do not wait 30 s per example
        headers = {"Authorization": f"Bearer {bearer}"}
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=15)
        sent += 1
        assert response.status_code < 500 and str(response.status_code) in documented, (
            f"{name} {operation.label} ({mode.value}) answered {response.status_code}"
            f" (documented: {', '.join(sorted(documented))}):\n"
            f"{case.as_curl_command(headers=headers, base_url=base_url)}\n{response.text[:500]}"
        )

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (an operation without parameters, in negative mode)
        pass
    except (AssertionError, FlakyFailure) as exc:  # flaky: a 5xx that the same request did not repeat
        return sent, "\n".join(str(e) for e in getattr(exc, "exceptions", [exc]))
    return sent, ""


def fuzz(name: str, base_url: str, bearer: Any, deadline: float) -> tuple[int, list[str]]:
    """Every operation of one service, in both generation modes; returns (requests sent, failures found)."""
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    paths = requests.get(base_url + "/openapi.json", timeout=15).json()["paths"]
    sent, found = 0, []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith(STREAMS):
            continue
        for mode in MODES:
            if time.monotonic() > deadline:
                return sent, [*found, f"{name}: the time budget ran out before {operation.label} ({mode.value})"]
            documented = set(paths[operation.path][operation.method.lower()]["responses"])
            n, failure = check_operation(name, base_url, operation, mode, bearer(operation.path), documented)
            sent += n
            if failure:
                found.append(failure)
    return sent, found


async def register_agents(plane: ControlPlane, hub: httpx.AsyncClient) -> None:
    """The tenant agents of the plane register with the hub (as on a provisioned VPS), so their routes can work."""
    agents = [name for name in ("safety-wrapper", "secrets-proxy") if name in plane.procs]
    tenant_id = None
    for name in agents:
        tenant_id, _, token = await mint_token(hub, plane.headers, tenant_id)
        path = Path(plane.procs[name].env[AGENTS[name][1] + "REGISTRATION_TOKEN_FILE"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(token)  # noqa: ASYNC240 - a few bytes
    if not agents:
        return
    async with asyncio.timeout(60):
        while True:
            r = await hub.get(f"/api/v1/admin/tenants/{tenant_id}", headers=plane.headers)
            if r.status_code == 200 and {a["agent"] for a in r.json()["agents"]} >= set(agents):
                return
            await asyncio.sleep(0.2)


@pytest.mark.timeout(420)  # starting six services takes a minute on a busy machine; the generation itself ~90 s
async def test_no_input_to_any_service_gets_a_5xx(plane: ControlPlane):
    async with httpx.AsyncClient(base_url=plane.hub) as hub:
        await register_agents(plane, hub)
        agent = await enroll(hub, plane.headers)
    credentials = _credentials(plane, agent.api_key)
    deadline = time.monotonic() + 300  # a hard stop far above the usual run; the examples are the real budget
    total, failures, started = 0, [], time.monotonic()
    for name, proc in plane.procs.items():
        bearer = credentials.get(name, lambda path: plane.world.material.admin_token)
        sent, found = await asyncio.to_thread(fuzz, name, proc.url, bearer, deadline)
        total += sent
        failures += found
        print(f"{name}: {sent} requests, {len(found)} failing operations, {time.monotonic() - started:.0f} s so far")
    print(f"{total} generated requests in {time.monotonic() - started:.0f} s")
    assert total > 500, total
    errors = [line for p in plane.procs.values() for line in p.logs().splitlines() if '"level": "error"' in line]
    assert failures == [], "\n\n".join(failures) + "\n\nservice errors:\n" + "\n".join(errors[-20:])
