"""The whole control plane as real processes on this machine: the six services (`python -m …`) against the
sandbox world, for the end-to-end tests and the order-flow benchmark."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

from letsbe_contracts import Envelope
from letsbe_platform.bus import Bus
from letsbe_platform.runner import SERVICES
from letsbe_platform.testing import eventually
from letsbe_platform.testing.processes import ServiceProcess
from letsbe_platform.testing.stream import stream_envelopes
from letsbe_sandbox.world import Sandbox

FINAL = {"FULFILLED", "CANCELLED", "FAILED"}
# Short redelivery windows and job leases, so the work of a killed worker comes back in seconds (production waits
# longer): the fault tests set these on the services they kill.
FAST_RECOVERY = {
    "LETSBE_HUB_ALLOCATION_ACK_WAIT_SECONDS": "4",
    "LETSBE_DNS_CONSUMER_ACK_WAIT_SECONDS": "4",
    "LETSBE_DNS_CONSUMER_BACKOFF_SECONDS": "0.5,1",
    "LETSBE_PROVISIONER_ACK_WAIT_SECONDS": "4",
    "LETSBE_PROVISIONER_LEASE_SECONDS": "3",
}


@dataclass
class ControlPlane:
    world: Sandbox
    base_env: dict[str, str]
    bus: Bus
    procs: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def hub(self) -> str:
        return self.world.hub_url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.world.material.admin_token}"}

    def process(self, name: str) -> ServiceProcess:
        svc = next(s for s in SERVICES if s.name == name)
        env = {**self.base_env, **self.world.env()[name]}
        port = getattr(self.world.ports, name.replace("-", "_").replace("_api", ""))
        return ServiceProcess(svc.module, env, port=port, port_env=svc.port_env)

    # A bound, not a wait: readiness ends it. Importing a service takes a minute and more on a busy 2-core machine.
    async def start(self, *names: str, ready_timeout: float = 240) -> None:
        for name in names:
            self.procs[name] = self.process(name).start()
        await asyncio.gather(*(self.procs[n].wait_ready(ready_timeout) for n in names))

    async def restart(self, name: str) -> None:
        self.procs[name].kill()
        await self.start(name)

    def stop_all(self) -> None:
        for p in self.procs.values():
            p.kill()

    def logs(self) -> str:
        out = [f"===== {n}\n{p.logs()[-6000:]}" for n, p in self.procs.items()]
        for address, vps in sorted(self.world.vpses.items()):
            if vps.error:
                out.append(f"===== VPS {address}: {vps.error}")
            for agent in vps.agents:
                path = vps.log_path(agent)
                text = path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"
                out.append(f"===== VPS {address} {agent}\n{text}")
        return "\n".join(out)

    # --- what a customer and an operator do ---------------------------------------------------------------------

    async def order(self, client: httpx.AsyncClient, domain: str, tools: list[str], tier: str = "build") -> dict:
        r = await client.post(
            f"{self.hub}/api/v1/admin/orders",
            headers=self.headers,
            json={
                "customer_name": "E2E Customer",
                "customer_email": "owner@" + domain,
                "domain": domain,
                "tier": tier,
                "region": "eu",
                "tools": tools,
            },
        )
        assert r.status_code == 201, r.text
        return r.json()

    async def pay(self, client: httpx.AsyncClient, session_id: str) -> None:
        """The customer pays; the Stripe fake delivers the signed checkout.session.completed like Stripe does."""
        r = await client.post(f"{self.world.urls['stripe']}/_fake/checkout/sessions/{session_id}/complete")
        assert r.status_code == 200 and r.json()["webhook_status"] == 200, r.text

    async def get_order(self, client: httpx.AsyncClient, order_id: str) -> dict:
        r = await client.get(f"{self.hub}/api/v1/admin/orders/{order_id}", headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()

    async def wait_status(self, client: httpx.AsyncClient, order_id: str, status: str, timeout: float = 90) -> dict:
        seen: dict = {}

        async def reached() -> dict | None:
            seen.update(await self.get_order(client, order_id))
            assert seen["status"] not in FINAL - {status}, seen
            return seen if seen["status"] == status else None

        try:
            return await eventually(reached, f"order {order_id} {status}", timeout=timeout, every=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {seen.get('status')}\n{self.logs()}") from None

    async def tenant(self, client: httpx.AsyncClient, tenant_id: str) -> dict:
        r = await client.get(f"{self.hub}/api/v1/admin/tenants/{tenant_id}", headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()

    async def heartbeating(self, client: httpx.AsyncClient, tenant_id: str, timeout: float = 30) -> None:
        """Until both of the tenant's agents have sent a heartbeat."""

        async def both() -> bool:
            agents = (await self.tenant(client, tenant_id))["agents"]
            return {a["agent"] for a in agents if a["last_heartbeat_at"]} == {"safety-wrapper", "secrets-proxy"}

        await eventually(both, f"both agents of tenant {tenant_id} heartbeating", timeout=timeout, every=0.3)

    async def events(self, subject_event, correlation_id: str | None = None) -> list[Envelope]:
        """Every message of one event type in the stream (optionally of one order), read with a fresh consumer."""
        return [
            env
            for env in await stream_envelopes(self.bus, subject_event)
            if correlation_id is None or env.correlation_id == correlation_id
        ]
