"""Every route of the hub app, discovered from the app itself, answers the auth rules of its family.

- /api/v1/admin/*  : 401 without a token or with an unknown one, 403 with a valid token lacking the scope,
                     and never 401/403 with a token holding every scope;
- /api/v1/tenant/* : agent-authenticated, 401 without credentials (enrolment trades a one-time token instead);
- /api/v1/llm/*    : the LLM relay, authenticated with the tenant's relay key: checked as a tenant route;
- /console/*       : the operators' web console: without a valid session cookie every page and action answers a
                     303 to the sign-in page (which, with its form's POST, is open);
- /api/v1/customer/*: the customer's session cookie, 401 without it (asking for a sign-in link is open);
- /portal/*         : the customer's pages, a redirect to the sign-in page without a session (its pages are open);
- /api/v1/public/* and the ops routes: open.
A new route outside these families fails here until it is classified, so nobody adds an unguarded route by accident.
"""

import re
import uuid

import httpx
from asgi_lifespan import LifespanManager
from fastapi.routing import iter_route_contexts

from hub_testing.orders import token
from letsbe_hub.app import create_app
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.config import HubSettings

OPS = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
# Tenant routes that may answer an empty body before looking at credentials (they must still refuse it):
# enrolment authenticates with the one-time registration token in its body, not with agent credentials, and
# the heartbeat (the hub's hottest route) authenticates inside its handler, after FastAPI parsed the body.
# Their own tests cover their 401s. Add a route here only for such a reason.
TENANT_BODY_FIRST = {("POST", "/api/v1/tenant/register"), ("POST", "/api/v1/tenant/heartbeat")}
CONSOLE_OPEN = {("GET", "/console/sign-in"), ("POST", "/console/sign-in")}


def family(path: str) -> str | None:
    if path in OPS:
        return "ops"
    if path.startswith("/api/v1/llm/"):
        return "tenant"  # the relay: the tenant's relay key, 401 without it
    if path == "/console" or path.startswith("/console/"):
        return "console"
    if path == "/api/v1/customer/sign-in" or path.startswith("/portal/sign-in"):
        return "public"  # asking for and using an emailed sign-in link
    if path.startswith("/api/v1/customer/"):
        return "customer"
    if path in ("/portal", "/portal/"):
        return "public"  # a redirect to the orders page
    if path.startswith("/portal/"):
        return "portal"
    for prefix in ("admin", "tenant", "public"):
        if path.startswith(f"/api/v1/{prefix}/") or path == f"/api/v1/{prefix}":
            return prefix
    return None


def routes(app) -> list[tuple[str, str]]:
    found = set()
    for ctx in iter_route_contexts(app.routes):
        for method in ctx.methods or ():
            if method != "HEAD":
                found.add((method, ctx.path))
    return sorted(found)


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)


async def test_every_route_is_guarded_as_its_family_requires(database_url, nats_url, bus_namespace, sessions):
    settings = HubSettings.model_validate(
        {"DATABASE_URL": database_url, "NATS_URL": nats_url, "LETSBE_BUS_NAMESPACE": bus_namespace, "log_json": False}
    )
    app = create_app(settings)
    table = routes(app)
    assert ("GET", "/api/v1/admin/orders/{order_id}/events") in table  # discovery sees included routers
    no_scope = {"Authorization": f"Bearer {await token(sessions, [], name='no-scopes')}"}
    every_scope = {"Authorization": f"Bearer {await token(sessions, list(Scope), name='all-scopes')}"}
    unknown = {"Authorization": "Bearer lbh_this-token-does-not-exist"}
    problems: list[str] = []

    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://hub") as client,
    ):

        async def call(method: str, path: str, headers: dict[str, str] | None = None) -> int:
            body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
            # Same-origin, as a page of the hub would send it: the web routes' CSRF check is not what is tested here.
            same_origin = {"Origin": "http://hub"}
            return (await client.request(method, path, headers={**same_origin, **(headers or {})}, **body)).status_code

        for method, template in table:
            path, kind, where = concrete(template), family(template), f"{method} {template}"
            if kind is None:
                problems.append(f"{where}: not under /api/v1/admin|tenant|public nor an ops route — classify it")
            elif kind == "admin":
                for label, headers, expected in (
                    ("no token", None, 401),
                    ("unknown token", unknown, 401),
                    ("token without the scope", no_scope, 403),
                ):
                    status = await call(method, path, headers)
                    if status != expected:
                        problems.append(f"{where} with {label}: {status}, expected {expected}")
                status = await call(method, path, every_scope)
                if status in (401, 403):
                    problems.append(f"{where} with every scope: {status}")
            elif kind == "tenant":
                status = await call(method, path)
                if (method, template) in TENANT_BODY_FIRST:
                    if status not in (401, 422):
                        problems.append(f"{where} without credentials and an empty body: {status}")
                elif status != 401:
                    problems.append(f"{where} without agent credentials: {status}, expected 401")
            elif kind == "console":
                if (method, template) in CONSOLE_OPEN:
                    continue
                for label, cookies in (("no session", {}), ("an unknown session", {"letsbe_console_session": "x"})):
                    client.cookies = cookies
                    r = await client.request(method, path)
                    client.cookies = {}
                    if r.status_code != 303 or not r.headers["location"].startswith("/console/sign-in"):
                        problems.append(f"{where} with {label}: {r.status_code} {r.headers.get('location')}")
            elif kind == "customer":
                status = await call(method, path)
                if status != 401:
                    problems.append(f"{where} without a session: {status}, expected 401")
            elif kind == "portal":
                r = await client.request(method, path, headers={"Origin": "http://hub"})
                if r.status_code != 303 or r.headers.get("location") != "/portal/sign-in":
                    problems.append(f"{where} without a session: {r.status_code}, expected a redirect to sign in")
            else:  # public and ops are open
                status = await call(method, path)
                if status in (401, 403):
                    problems.append(f"{where} is {kind} but answered {status}")
    assert not problems, "\n".join(problems)
