"""The real process: streamed answers are passed on as they arrive, not after the upstream has finished."""

import json
import time

import httpx
from cryptography.fernet import Fernet

from letsbe_platform.testing.processes import ServiceProcess
from letsbe_secrets_proxy.proxy.registry import write_store

SENTINEL = "lbsp-sentinel-live-test"


async def test_stream_chunks_reach_the_agent_while_the_upstream_is_still_talking(tmp_path, upstream, processes):
    key = Fernet.generate_key().decode()
    write_store(tmp_path / "secrets.enc", key, {"db_password": "Sup3r/S3cret+pw!"})
    proxy = ServiceProcess("letsbe_secrets_proxy", {
        "LETSBE_SP_SENTINEL_KEY": SENTINEL, "LETSBE_SP_UPSTREAM_BASE_URL": upstream.url + "/v1",
        "LETSBE_SP_UPSTREAM_API_KEY": upstream.api_key, "LETSBE_SP_SECRETS_PATH": str(tmp_path / "secrets.enc"),
        "LETSBE_SP_SECRETS_KEY": key, "LETSBE_SP_USAGE_LEDGER_PATH": str(tmp_path / "usage.sqlite3"),
    }, port_env="LETSBE_SP_PORT")
    processes.append(proxy.start())
    await proxy.wait_ready()

    words = [f"word{i:03d} " * 6 for i in range(8)]  # 8 pieces of 48 characters
    upstream.chunks = [words[0], words[1], "secret: Sup3r/S3", "cret+pw! ", *words[2:]]
    upstream.chunk_delay = 0.15
    arrivals: list[tuple[float, str]] = []
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=30) as client, client.stream(
        "POST", proxy.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {SENTINEL}"},
        json={"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "go"}]},
    ) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                for choice in chunk["choices"]:
                    if choice["delta"].get("content"):
                        arrivals.append((time.perf_counter() - started, choice["delta"]["content"]))
    text = "".join(t for _, t in arrivals)
    assert text == words[0] + words[1] + "secret: SECRET_REF(db_password) " + "".join(words[2:])
    first, last = arrivals[0][0], arrivals[-1][0]
    # 14 events 0.15 s apart: the first words must be out long before the last ones exist (the proxy holds
    # back only the length of the longest secret form, ~100 characters here).
    assert last - first > 0.8, arrivals
