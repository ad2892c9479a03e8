"""What every service's OpenAPI promises: who may call each operation (two schemes: operator token with scopes,
agent credential) and which problem+json errors it answers, all with the one shared Problem schema."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from letsbe_platform.errors import PROBLEM_JSON
from letsbe_platform.web import PROBLEM_SCHEMA

SERVICE_APPS = {
    "hub-api": "letsbe_hub.app",
    "dns": "letsbe_dns.app",
    "provisioner": "letsbe_provisioner.app",
    "monitor": "letsbe_monitor.app",
    "safety-wrapper": "letsbe_safety_wrapper.app",
    "secrets-proxy": "letsbe_secrets_proxy.app",
}
# Operations anyone may call: health, metrics (kept off the internet by nginx), the public catalogue and calculator,
# Stripe's webhook (signed), an agent's registration (the one-time token is in the body) and the customer's one-time
# credential link (the link is the secret).
PUBLIC = {
    ("get", "/api/v1/public/credentials/{token}"),
    ("post", "/api/v1/public/credentials/{token}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/public/tools"),
    ("post", "/api/v1/public/calculate"),
    ("post", "/api/v1/public/stripe/webhook"),
    ("post", "/api/v1/public/orders"),  # the website's order form: abuse-limited, no token
    ("post", "/api/v1/tenant/register"),
    ("post", "/api/v1/customer/sign-in"),  # asks for an emailed link: the same answer for any email
}
# The credential each service's non-public operations take, by path prefix.
SCHEMES = {
    "hub-api": {
        "/api/v1/admin/": "operatorToken",
        "/api/v1/tenant/": "agentCredential",
        "/api/v1/llm/": "tenantLlmKey",
        "/api/v1/customer/": "customerSession",
    },
    "dns": {"/api/v1/tenant/": "agentCredential", "/api/v1/admin/": "dnsReadToken"},
    "safety-wrapper": {"/api/v1/tools": "toolsToken"},
    "secrets-proxy": {"/v1/": "sentinelKey"},
}


@pytest.fixture(scope="module", params=list(SERVICE_APPS))
def document(request) -> tuple[str, dict[str, Any]]:
    return request.param, importlib.import_module(SERVICE_APPS[request.param]).create_app().openapi()


def _operations(doc: dict[str, Any]):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def test_the_hub_has_three_bearer_schemes_and_the_customer_session_cookie():
    doc = importlib.import_module("letsbe_hub.app").create_app().openapi()
    schemes = doc["components"]["securitySchemes"]
    assert set(schemes) == {"operatorToken", "agentCredential", "tenantLlmKey", "customerSession"}
    cookie = schemes.pop("customerSession")
    assert cookie == {"type": "apiKey", "in": "cookie", "name": "letsbe_customer_session"}
    assert all(s == {**s, "type": "http", "scheme": "bearer"} for s in schemes.values())


def test_every_operation_declares_who_may_call_it(document):
    service, doc = document
    for method, path, operation in _operations(doc):
        security = operation.get("security")
        if (method, path) in PUBLIC:
            assert security is None, (method, path)
            continue
        expected = next(scheme for prefix, scheme in SCHEMES[service].items() if path.startswith(prefix))
        assert security is not None and [list(r) for r in security] == [[expected]], (method, path, security)
        scopes = security[0][expected]
        if expected == "operatorToken":  # the scope the token needs, named in the contract
            assert scopes and all(":" in s for s in scopes), (method, path)
        else:
            assert scopes == [], (method, path)


def test_every_operation_declares_its_problem_responses(document):
    service, doc = document
    assert doc["components"]["schemas"]["Problem"] == PROBLEM_SCHEMA
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for method, path, operation in _operations(doc):
        responses = operation["responses"]
        where = (service, method, path)
        errors = {int(code) for code in responses if int(code) >= 400}
        for code in errors:
            content = responses[str(code)]["content"]
            assert list(content) == [PROBLEM_JSON], where
            assert content[PROBLEM_JSON]["schema"] == {"$ref": "#/components/schemas/Problem"}, where
            assert content[PROBLEM_JSON]["example"]["status"] == code, where
        parameters = operation.get("parameters", [])
        expected = set()
        if parameters or "requestBody" in operation:
            expected.add(422)
        if "requestBody" in operation:
            expected.add(413)
        if operation.get("security"):
            expected.add(401)
            if any(operation["security"][0].values()):
                expected.add(403)
        if any(p["in"] == "path" for p in parameters):
            expected.add(404)
        if path not in ("/healthz", "/metrics"):
            expected.add(503)
        assert expected <= errors, (where, expected - errors)


def test_dns_acme_routes_take_the_agent_credential_and_say_what_cloudflare_can_answer():
    doc = importlib.import_module("letsbe_dns.app").create_app().openapi()
    for method in ("post", "delete"):
        operation = doc["paths"]["/api/v1/tenant/acme-challenge"][method]
        assert operation["security"] == [{"agentCredential": []}]
        assert {"401", "502", "503"} <= set(operation["responses"])
