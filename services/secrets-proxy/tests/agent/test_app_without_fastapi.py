"""The proxy on plain Starlette answers the shared routes and errors as every FastAPI service does, and serves the
OpenAPI document of the routes it has, without FastAPI in the process until that document is asked for."""

import json
import subprocess
import sys

import httpx

from letsbe_platform.errors import PROBLEM_JSON
from letsbe_secrets_proxy.app import create_app
from letsbe_secrets_proxy.config import SecretsProxySettings


def _client() -> httpx.AsyncClient:
    app = create_app(SecretsProxySettings.model_validate({"log_json": False}))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sp")


async def test_health_unknown_paths_and_methods_answer_as_on_every_service():
    async with _client() as client:
        r = await client.get("/healthz", headers={"X-Request-ID": "req-1234"})
        assert (r.status_code, r.json(), r.headers["x-request-id"]) == (200, {"status": "ok"}, "req-1234")
        r = await client.get("/readyz")  # the lifespan has not run: starting
        assert (r.status_code, r.headers["content-type"]) == (503, PROBLEM_JSON)
        r = await client.get("/nowhere")
        assert (r.status_code, r.headers["content-type"], r.json()["status"]) == (404, PROBLEM_JSON, 404)
        r = await client.get("/v1/chat/completions")
        assert (r.status_code, r.headers["content-type"], r.headers["allow"]) == (405, PROBLEM_JSON, "POST")
        r = await client.get("/metrics")
        assert r.status_code == 200 and "http_request_duration_seconds" in r.text


async def test_the_served_document_describes_the_routes_the_proxy_has():
    async with _client() as client:
        doc = (await client.get("/openapi.json")).json()
        assert doc == create_app(SecretsProxySettings.model_validate({"log_json": False})).openapi()
        served = {route.path for route in client._transport.app.routes} - {"/openapi.json"}  # type: ignore[attr-defined]
        assert set(doc["paths"]) == served
        for path in ("/v1/chat/completions", "/v1/responses"):
            operation = doc["paths"][path]["post"]
            assert operation["security"] == [{"sentinelKey": []}]
            assert {"400", "401", "413", "502", "503"} <= set(operation["responses"])


def test_fastapi_is_loaded_only_for_the_document():
    code = (
        "import json, sys\n"
        "from letsbe_secrets_proxy.app import create_app\n"
        "from letsbe_secrets_proxy.config import SecretsProxySettings\n"
        "app = create_app(SecretsProxySettings.model_validate({}))\n"
        "before = 'fastapi' in sys.modules\n"
        "app.openapi()\n"
        "print(json.dumps([before, 'fastapi' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == [False, True]
