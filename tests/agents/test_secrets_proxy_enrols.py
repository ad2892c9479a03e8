"""The Secrets Proxy runs the same agent runtime: it registers as the secrets-proxy agent and heartbeats."""

from asgi_lifespan import LifespanManager

from hub_testing.tenants import mint_token
from letsbe_agent.runtime import agent_of
from letsbe_platform.testing import eventually
from letsbe_secrets_proxy.app import create_app
from letsbe_secrets_proxy.config import SecretsProxySettings


async def test_secrets_proxy_registers_as_its_own_agent_and_heartbeats(hub, admin, tmp_path):
    tenant_id, _, token = await mint_token(hub, admin)
    settings = SecretsProxySettings.model_validate(
        {
            "hub_url": "http://hub",
            "state_dir": tmp_path / "sp",
            "registration_token": token,
            "docker_socket": tmp_path / "no-docker.sock",
            "long_poll": False,
            "log_json": False,
        }
    )
    app = create_app(settings)
    async with LifespanManager(app):
        agent = agent_of(app.state.runtime)
        assert agent is not None and agent.kind.value == "secrets-proxy"
        # the agent talks to the in-process hub through its transport
        agent.client._http._transport = hub._transport

        async def beaten() -> dict | None:
            view = (await hub.get(f"/api/v1/admin/tenants/{tenant_id}", headers=admin)).json()
            return view if view["agents"] and view["agents"][0]["last_heartbeat_at"] else None

        view = await eventually(beaten, "the proxy registered and beat", timeout=30)
        assert [a["agent"] for a in view["agents"]] == ["secrets-proxy"]
        assert view["agents"][0]["last_heartbeat_at"] is not None
        assert view["status"] == "PENDING"  # only the Safety Wrapper makes a tenant ACTIVE
    # without a hub configured the proxy runs without the agent runtime
    app = create_app(SecretsProxySettings.model_validate({"log_json": False}))
    async with LifespanManager(app):
        assert agent_of(app.state.runtime) is None
