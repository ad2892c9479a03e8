"""No way around the gate, proven on the rendered compose files: a graph of container networks, published ports and
mounts. From OpenClaw's network position only the Safety Wrapper and the Secrets Proxy answer; no tool port, no
Docker socket and no Hub credential is reachable or mounted. Tools answer to nginx (127.0.0.1, host network) and
the Safety Wrapper only. (The same, probed live from OpenClaw's container on the Debian 12 test VPS, is a
separate test: TEST-VPS.md.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import yaml

from letsbe_provisioner.rendering.plan import AI_DIR, STATE_DIR, Plan
from provisioner_testing import ALL_TOOLS, TOKENS, plan_for

HOST = "<host network>"
SOCKET = "/var/run/docker.sock"


@dataclass
class Container:
    project: str
    service: str
    networks: set[str]  # Docker network names, or {HOST}
    ports: list[str]  # published, as written
    mounts: list[str]  # volume specs, as written
    env_files: list[str]
    doc: dict = field(repr=False)


@dataclass
class Graph:
    containers: dict[tuple[str, str], Container]
    internal: dict[str, bool]  # network name -> internal (as declared by the project that creates it)

    @classmethod
    def of(cls, plan: Plan) -> Graph:
        containers: dict[tuple[str, str], Container] = {}
        declared: dict[str, dict] = {}
        for f in plan.files(TOKENS):
            if not f.path.endswith("docker-compose.yml"):
                continue
            doc = yaml.safe_load(f.content)
            project, nets = doc["name"], doc.get("networks") or {}

            def real(key: str, project: str = project, nets: dict = nets) -> str:
                spec = nets.get(key) or {}
                return spec.get("name") or f"{project}_{key}"

            for key, spec in nets.items():
                if not (spec or {}).get("external"):
                    declared[real(key)] = spec or {}
            for name, svc in doc["services"].items():
                if svc.get("network_mode") == "host":
                    networks = {HOST}
                else:
                    assert "network_mode" not in svc, f"{project}/{name}: {svc['network_mode']}"
                    keys = svc.get("networks") or ["default"]
                    networks = {real(k) for k in keys}
                    if "default" in (svc.get("networks") or ["default"]):
                        declared.setdefault(real("default"), {})  # compose's implicit default network
                containers[(project, name)] = Container(
                    project, name, networks, [str(p) for p in svc.get("ports", [])], list(svc.get("volumes", [])),
                    list(svc.get("env_file", [])), svc,
                )
        used = {n for c in containers.values() for n in c.networks} - {HOST}
        missing = used - set(declared)
        assert not missing, f"external networks no project creates: {missing}"
        return cls(containers, {name: bool(spec.get("internal")) for name, spec in declared.items()})

    def reachable_from(self, who: Container) -> set[tuple[str, str]]:
        """Containers that share a network with ``who``. A container on a network with a route out also reaches
        the host (and what it publishes beyond loopback): that is checked separately, as a network flag."""
        return {k for k, c in self.containers.items() if c is not who and c.networks & who.networks - {HOST}}

    def members(self, network: str) -> set[tuple[str, str]]:
        return {k for k, c in self.containers.items() if network in c.networks}


OPENCLAW = ("letsbe-ai", "openclaw")
SW, SP = ("letsbe-ai", "safety-wrapper"), ("letsbe-ai", "secrets-proxy")
TOOLS = sorted(ALL_TOOLS)


def tool_services(graph: Graph, plan: Plan) -> dict[str, list[Container]]:
    projects = {st.project: st.name for st in plan.stacks}
    out: dict[str, list[Container]] = {}
    for c in graph.containers.values():
        if c.project in projects:
            out.setdefault(projects[c.project], []).append(c)
    return out


def assert_no_way_around_the_gate(plan: Plan) -> None:
    graph = Graph.of(plan)
    openclaw = graph.containers[OPENCLAW]

    # Its network position: internal networks only (no route out, so not the host's ports either), and on them
    # only the two agents.
    assert HOST not in openclaw.networks and openclaw.networks
    assert all(graph.internal[n] for n in openclaw.networks), openclaw.networks
    assert graph.reachable_from(openclaw) == {SW, SP}
    assert not openclaw.ports and "ports" not in openclaw.doc and "expose" not in openclaw.doc
    assert not {"privileged", "pid", "ipc", "cap_add", "devices", "extra_hosts"} & set(openclaw.doc)

    # Nothing of the host but its own configuration file (read-only), no socket, no agent state (Hub credential,
    # registration tokens), no secret store.
    binds = [m for m in openclaw.mounts if m.startswith(("/", "./", "../"))]
    assert binds == ["./openclaw.json:/etc/openclaw/openclaw.json:ro"], binds
    assert not [m for m in openclaw.mounts if SOCKET in m or STATE_DIR in m or "/etc/letsbe" in m]
    assert openclaw.env_files == ["openclaw.env"]
    assert not [k for k in openclaw.doc.get("environment", {}) if "REGISTRATION" in k or "UPSTREAM" in k]

    tools = tool_services(graph, plan)
    assert set(tools) == {st.name for st in plan.stacks}
    sw_networks = graph.containers[SW].networks
    for st in plan.stacks:
        services = tools[st.name]
        for c in services:
            # No tool container shares a network with OpenClaw, and none publishes beyond loopback except a tool
            # that faces the internet itself (Stalwart's mail ports; the gate has no route to them either).
            assert not c.networks & openclaw.networks, f"{st.name}/{c.service} is on {c.networks & openclaw.networks}"
            public = {f"{port}:{port}" for port in st.profile.public_ports}
            assert all(p.startswith("127.0.0.1:") or p in public for p in c.ports), f"{st.name}/{c.service}: {c.ports}"
            assert HOST not in c.networks
        (app,) = [c for c in services if c.service == "app"]
        # nginx (host network) proxies to the published loopback port; the Safety Wrapper uses the tool network,
        # which holds the tool's app and the Safety Wrapper alone.
        loopback = f"127.0.0.1:{st.tool.host_port}:{st.tool.container_port}"
        assert app.ports == [loopback, *(f"{p}:{p}" for p in st.profile.public_ports)]
        (tool_net,) = app.networks & sw_networks
        assert graph.internal[tool_net]
        assert graph.members(tool_net) == {(st.project, "app"), SW}
        for c in services:
            if c.service != "app":  # databases and caches: their project's network only
                assert c.networks == {f"{st.project}_default"}, f"{st.name}/{c.service}: {c.networks}"

    # The Docker socket: the two agents (each updates the other; the Safety Wrapper restarts tools) and tools whose
    # profile needs it; never OpenClaw.
    with_socket = {k for k, c in graph.containers.items() if any(SOCKET in m for m in c.mounts)}
    assert with_socket == {SW, SP} | {(st.project, "app") for st in plan.stacks if st.profile.docker_socket}
    assert OPENCLAW not in with_socket
    # The Docker daemon listens on its unix socket only (no TCP socket to reach from a network).
    daemon = [f for f in plan.files(TOKENS) if f.path == "/etc/docker/daemon.json"]
    assert daemon and "hosts" not in json.loads(daemon[0].content)
    # nginx still reaches every tool: host network, upstreams on 127.0.0.1.
    nginx = graph.containers[("letsbe-nginx", "nginx")]
    assert nginx.networks == {HOST}
    # The Safety Wrapper is told the same addresses the network layout provides.
    sw_env = {f.path: f for f in plan.step_files(10, TOKENS)}[f"{AI_DIR}/safety-wrapper.env"].content
    urls = json.loads(next(line for line in sw_env.splitlines() if line.startswith("LETSBE_SW_TOOL_URLS=")).split(
        "=", 1)[1])  # fmt: skip
    assert urls == {st.name: f"{st.profile.upstream_scheme}://{st.container}:{st.tool.container_port}"
                    for st in plan.stacks}  # fmt: skip
    for st in plan.stacks:
        assert {c.doc.get("container_name") for c in tools[st.name] if c.service == "app"} == {st.container}


@pytest.mark.parametrize("tool", TOOLS)
def test_from_openclaws_network_position_no_port_of_this_tool_is_reachable(tool: str) -> None:
    assert_no_way_around_the_gate(plan_for((tool,)))


def test_from_openclaws_network_position_no_tool_is_reachable_with_every_tool_installed() -> None:
    assert_no_way_around_the_gate(plan_for(ALL_TOOLS))


def test_the_graph_check_catches_openclaw_on_the_host_network_or_a_shared_tool_network() -> None:
    """The check can fail: the old layout (OpenClaw on the host network) and a tool joined to the AI gate."""
    plan = plan_for(("ghost",))
    original = plan.step_files

    def with_ai(edit):
        def step_files(number, tokens=None, llm_key=None):
            files = original(number, tokens, llm_key)
            if number != 10:
                return files
            out = []
            for f in files:
                if f.path.endswith("docker-compose.yml"):
                    doc = yaml.safe_load(f.content)
                    edit(doc)
                    f = type(f)(f.path, yaml.safe_dump(doc), f.mode, f.owner)
                out.append(f)
            return out
        return step_files

    def host_network(doc):
        doc["services"]["openclaw"].pop("networks")
        doc["services"]["openclaw"]["network_mode"] = "host"

    def gate_not_internal(doc):
        doc["networks"]["gate"]["internal"] = False

    def socket_mounted(doc):
        doc["services"]["openclaw"]["volumes"].append(f"{SOCKET}:{SOCKET}")

    def credential_mounted(doc):
        doc["services"]["openclaw"]["volumes"].append(f"{STATE_DIR}/safety-wrapper:/creds:ro")

    for edit in (host_network, gate_not_internal, socket_mounted, credential_mounted):
        plan.step_files = with_ai(edit)  # type: ignore[method-assign]
        with pytest.raises(AssertionError):
            assert_no_way_around_the_gate(plan)
    plan.step_files = original  # type: ignore[method-assign]
    assert_no_way_around_the_gate(plan)

    def tool_on_gate(number, tokens=None, llm_key=None):
        files = original(number, tokens, llm_key)
        if number != 9:
            return files
        out = []
        for f in files:
            if f.path.endswith("docker-compose.yml"):
                doc = yaml.safe_load(f.content)
                doc["services"]["app"]["networks"].append("gate")
                doc["networks"]["gate"] = {"name": "letsbe-ai-gate", "external": True}
                f = type(f)(f.path, yaml.safe_dump(doc), f.mode, f.owner)
            out.append(f)
        return out

    plan.step_files = tool_on_gate  # type: ignore[method-assign]
    with pytest.raises(AssertionError):
        assert_no_way_around_the_gate(plan)
