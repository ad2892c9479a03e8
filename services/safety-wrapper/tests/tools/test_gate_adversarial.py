"""An agent trying to get around the gate: the same escalation spelled differently (a number as a string, other
case, full-width letters), hidden in nested arguments, secrets pasted where they would be published, malformed
numbers and shapes. Each must end gated, refused or rejected, and audited, with nothing sent to the tool."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from letsbe_contracts.catalog import load_catalog
from letsbe_safety_wrapper.tools.audit import verify
from letsbe_safety_wrapper.tools.policy import Policy, RiskClass, readings

G, Y, YE, R, CR = (RiskClass.GREEN, RiskClass.YELLOW, RiskClass.YELLOW_EXTERNAL, RiskClass.RED,
                   RiskClass.CRITICAL_RED)
SHIPPED = resources.files("letsbe_safety_wrapper.tools").joinpath("policy.json")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load()


def _audit(w: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (w.settings.tools_dir / "audit.jsonl").read_text().splitlines()]


def test_the_policy_covers_every_tool_in_the_catalog(policy):
    tools = {t.name for t in load_catalog().tools if t.host_port is not None}
    assert len(tools) == 14
    assert tools <= set(policy.doc.tools), sorted(tools - set(policy.doc.tools))
    for name in tools:
        assert policy.doc.tools[name].actions, name
        assert policy.classify(name, "not.in.policy", {}).risk.severity >= R.severity  # unnamed: gated


def test_the_admin_only_tool_runs_nothing_without_approval(policy):
    portainer = policy.doc.tools["portainer"].actions
    assert all(spec.risk.severity >= RiskClass.RED.severity for spec in portainer.values())


ODOO_OK = {"service": "object", "method": "execute_kw"}


def _odoo(model: str, method: str, **params: Any) -> dict[str, Any]:
    return {"params": {**ODOO_OK, **params, "args": ["db", 2, "SECRET_REF(odoo_agent_password)", model, method,
                                                     [[]]]}}


# (what the agent tries, tool, action, args, the class it must get). Each row is a call that ran without
# approval at the default autonomy level (2: GREEN and YELLOW run) before rules compared canonical values and
# looked into nested arguments.
EVASIONS = [
    ("share type as a string", "nextcloud", "shares.create", {"path": "/a", "shareType": "3"}, YE),
    ("share type as a float string", "nextcloud", "shares.create", {"path": "/a", "shareType": " 3.0 "}, YE),
    ("share type as a float", "nextcloud", "shares.create", {"path": "/a", "shareType": 4.0}, YE),
    ("share type missing (the tool's meaning unknown)", "nextcloud", "shares.create", {"path": "/a"}, R),
    ("second post published", "ghost", "posts.update",
     {"id": "1", "posts": [{"status": "draft"}, {"status": "published"}]}, YE),
    ("status in other case", "ghost", "posts.update", {"id": "1", "posts": [{"status": "Published"}]}, YE),
    ("status in full-width letters", "ghost", "posts.update", {"id": "1", "posts": [{"status": "ｐｕｂｌｉｓｈｅｄ"}]},
     YE),
    ("a 'draft' created published", "ghost", "posts.create_draft", {"posts": [{"status": "published"}]}, YE),
    ("a draft mailed to members", "ghost", "posts.update", {"id": "1", "posts": [{"status": "draft"}],
                                                           "newsletter": "default-newsletter"}, YE),
    ("recipients nested", "ghost", "posts.create_draft", {"posts": [{"meta": {"recipients": ["a@b.c"]}}]}, YE),
    ("bcc nested in a list", "listmonk", "campaigns.create", {"lists": [1], "headers": [{"bcc": "x@y.z"}]}, YE),
    ("amount as a string", "calcom", "bookings.create", {"amount": "250"}, R),
    ("amount nested", "calcom", "bookings.create", {"booking": {"payment": {"amount": 250}}}, R),
    ("amount in exponent notation", "calcom", "bookings.create", {"amount": "2.5e2"}, R),
    ("a chatwoot 'note' that is not private", "chatwoot", "messages.note",
     {"account_id": 1, "conversation_id": 2, "content": "hi"}, YE),
    ("a chatwoot note with private 'false'", "chatwoot", "messages.note",
     {"account_id": 1, "conversation_id": 2, "content": "hi", "private": "false"}, YE),
    ("a chatwoot note with private 0", "chatwoot", "messages.note",
     {"account_id": 1, "conversation_id": 2, "content": "hi", "private": 0}, YE),
    ("destructive text in full-width letters", "nocodb", "records.create",
     {"table_id": "t1", "fields": {"note": "ＤＲＯＰ ＴＡＢＬＥ users"}}, CR),
    ("destructive text in a key", "nocodb", "records.create", {"table_id": "t1", "fields": {"rm -rf /": 1}}, CR),
    ("odoo read that unlinks", "odoo", "records.read", _odoo("res.partner", "unlink"), CR),
    ("odoo read of the users' passwords model", "odoo", "records.read", _odoo("res.users", "search_read"), CR),
    ("odoo write that changes access rights", "odoo", "records.write", _odoo("ir.model.access", "write"), CR),
    ("odoo call to the db service", "odoo", "records.read", _odoo("res.partner", "search_read", service="db"), CR),
    ("odoo 'create' of an outgoing email", "odoo", "records.create", _odoo("mail.mail", "create"), YE),
    ("nocodb write into its meta tables", "nocodb", "records.update", {"table_id": "NC_users"}, CR),
    ("activepieces flow created enabled", "activepieces", "flows.create", {"displayName": "x",
                                                                         "status": "enabled"}, R),
]


@pytest.mark.parametrize(("what", "tool", "action", "args", "expected"), EVASIONS, ids=[e[0] for e in EVASIONS])
def test_an_escalation_cannot_be_respelled_or_hidden(policy, what, tool, action, args, expected):
    assert policy.classify(tool, action, args).risk is expected


# And the honest versions of those calls keep their class (the rules do not gate everything).
HONEST = [
    ("nextcloud", "shares.create", {"path": "/a", "shareType": "0"}, Y),
    ("ghost", "posts.update", {"id": "1", "posts": [{"status": "draft"}, {"status": "draft"}]}, Y),
    ("chatwoot", "messages.note", {"account_id": 1, "conversation_id": 2, "content": "hi", "private": True}, Y),
    ("chatwoot", "messages.note", {"account_id": 1, "conversation_id": 2, "content": "hi", "private": "TRUE"}, Y),
    ("calcom", "bookings.create", {"amount": "99.5"}, YE),
    ("odoo", "records.read", _odoo("res.partner", "search_read"), G),
    ("odoo", "records.create", _odoo("res.partner", "create"), Y),
    ("odoo", "invoices.post", _odoo("account.move", "action_post"), R),
    ("bookstack", "pages.read", {"id": 3}, G),
    ("umami", "websites.stats", {"website_id": "w", "startAt": 0, "endAt": 1}, G),
]


@pytest.mark.parametrize(("tool", "action", "args", "expected"), HONEST, ids=[f"{t}.{a}" for t, a, _, _ in HONEST])
def test_honest_calls_keep_their_class(policy, tool, action, args, expected):
    assert policy.classify(tool, action, args).risk is expected


@pytest.mark.parametrize(("a", "b", "same"), [
    (3, "3", True), (3, "3.0", True), (3, " +3 ", True), (True, "true", True), (True, "TRUE", True), (True, 1, True),
    (False, 0, True), ("published", "Published", False), ("ｐｕｂｌｉｓｈｅｄ", "published", True), (3, "0x3", False),
    (None, "null", False), ("1e2", 100, True),
])
def test_canonical_readings(a, b, same):
    assert bool(readings(a) & readings(b)) is same


def test_case_is_folded_only_where_the_rule_says_the_tool_does():
    assert readings("Published", ignore_case=True) == readings("published", ignore_case=True)


# --- SECRET_REF only where the policy declares it ---------------------------------------------------------------

MISPLACED = [
    ("in a post body", {"id": "1", "posts": [{"html": "<p>key: SECRET_REF(ghost_key)</p>"}]}),
    ("in a title", {"id": "1", "posts": [{"title": "SECRET_REF(db_password)"}]}),
    ("in a key", {"id": "1", "posts": [{"SECRET_REF(ghost_key)": "x"}]}),
    ("deep in a list", {"id": "1", "posts": [{"tags": [{"name": "a"}, {"name": "SECRET_REF(ghost_key)"}]}]}),
]


@pytest.mark.parametrize(("what", "args"), MISPLACED, ids=[m[0] for m in MISPLACED])
async def test_a_secret_ref_outside_its_declared_slots_is_refused_and_audited(wrapper, what, args):
    r = await wrapper.call("ghost", "posts.update", args)  # YELLOW: would run at once, secret bound to ghost
    assert r.status_code == 403, r.text
    assert r.json()["type"].endswith("tools-secret-not-allowed")
    assert wrapper.receiver.requests == []
    entry = _audit(wrapper)[-1]
    assert entry["outcome"] == "denied" and entry["error"] == "tools-secret-not-allowed"
    for value in ("ghost-admin-key-0123456789abcdef", "Sup3r-S3cret-DB-pass!"):
        assert value not in r.text and value not in json.dumps(entry)


async def test_a_secret_ref_in_its_declared_slot_is_substituted(wrapper):
    r = await wrapper.call("ghost", "echo", {"config": "password=SECRET_REF(db_password)", "other": "plain"})
    assert r.status_code == 200, r.text
    assert wrapper.receiver.requests[0]["body"]["config"] == "password=Sup3r-S3cret-DB-pass!"


def test_shipped_slots_are_where_credentials_are_set(policy):
    def misplaced(tool: str, action: str, args: dict[str, Any]) -> list[str]:
        return policy.misplaced_refs(policy.doc.tools[tool].actions[action], args)

    assert misplaced("odoo", "records.read", _odoo("res.partner", "search_read")) == []
    assert misplaced("odoo", "records.read", {"params": {"args": ["db", 2, "x", "SECRET_REF(a)"]}}) == \
        ["params.args.3"]
    assert misplaced("keycloak", "users.reset_password", {"realm": "r", "id": "u", "value": "SECRET_REF(p)"}) == []
    assert misplaced("stalwart", "accounts.set_password", {"name": "n", "ops": [{"value": "SECRET_REF(p)"}]}) == []
    assert misplaced("ghost", "posts.create_draft", {"posts": [{"html": "SECRET_REF(p)"}]}) == ["posts.0.html"]


# --- malformed arguments: 4xx problem+json, audited, nothing runs -------------------------------------------

NESTED_DEEP = '{"tool": "ghost", "action": "echo", "args": {"a": ' + "[" * 100 + "]" * 100 + "}}"
NESTED_VERY_DEEP = '{"tool": "ghost", "action": "echo", "args": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}"


def _body(args_json: str) -> str:
    return '{"tool": "ghost", "action": "echo", "args": ' + args_json + "}"


MALFORMED = [
    ("NaN", _body('{"amount": NaN}'), 422),
    ("Infinity", _body('{"amount": Infinity}'), 422),
    ("-Infinity", _body('{"amount": -Infinity}'), 422),
    ("a float that overflows", _body('{"amount": 1e400}'), 422),
    ("a huge float", _body('{"amount": 1e300}'), 422),
    ("an integer past 2^53", _body('{"amount": 9007199254740993}'), 422),
    ("an integer of 5000 digits", _body('{"amount": ' + "9" * 5000 + "}"), 422),
    ("nested 100 deep", NESTED_DEEP, 422),
    ("nested 100000 deep", NESTED_VERY_DEEP, 422),
    ("a huge string", _body('{"x": "' + "a" * 300_000 + '"}'), 422),
    ("a repeated key", _body('{"shareType": 3, "shareType": 0}'), 422),
    ("args not an object", _body("[1, 2]"), 422),
    ("not JSON", "{tool: ghost}", 422),
    ("too large", _body('{"x": "' + "a" * 200_000 + '", "y": "' + "b" * 200_000 + '", "z": "' + "c" * 200_000
                        + '", "w": "' + "d" * 200_000 + '", "v": "' + "e" * 250_000 + '"}'), 413),
]


@pytest.mark.parametrize(("what", "body", "status"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_arguments_are_a_4xx_problem_and_audited(wrapper, what, body, status):
    raw = body.encode() if isinstance(body, str) else body
    r = await wrapper.client.post("/api/v1/tools/execute", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text[:300]
    assert r.headers["content-type"] == "application/problem+json"
    assert wrapper.receiver.requests == []
    [entry] = _audit(wrapper)
    # An oversized call is never held whole: the audit records the bytes read until it was refused.
    read = min(len(raw), wrapper.settings.max_request_bytes + 1)
    assert entry["outcome"] == "rejected" and entry["body_bytes"] == read
    assert verify(wrapper.settings.tools_dir / "audit.jsonl").ok


async def test_invalid_utf8_is_rejected_and_audited(wrapper):
    r = await wrapper.client.post("/api/v1/tools/execute", content=b'{"tool": "ghost", "action": "\xff"}',
                                  headers={"content-type": "application/json"})
    assert r.status_code == 422 and _audit(wrapper)[-1]["outcome"] == "rejected"


async def test_every_outcome_lands_in_one_verifiable_chain(wrapper):
    await wrapper.call("ghost", "posts.list")  # executed
    await wrapper.call("ghost", "posts.delete", {"id": "3"})  # pending approval
    await wrapper.call("ghost", "posts.update", {"id": "1", "posts": [{"html": "SECRET_REF(ghost_key)"}]})  # denied
    await wrapper.client.post("/api/v1/tools/execute", content=_body('{"a": NaN}'),
                              headers={"content-type": "application/json"})  # rejected
    assert [e["outcome"] for e in _audit(wrapper)] == ["executed", "pending_approval", "denied", "rejected"]
    assert verify(wrapper.settings.tools_dir / "audit.jsonl").ok


async def test_an_executor_that_breaks_is_audited_as_failed(wrapper):
    class Broken:
        async def run(self, *args: Any) -> Any:
            raise RuntimeError("bug")

    wrapper.tools.executors["http"] = Broken()
    with pytest.raises(RuntimeError):  # in process the ASGI transport re-raises what a server answers 500 to
        await wrapper.call("ghost", "posts.list")
    entry = _audit(wrapper)[-1]
    assert entry["outcome"] == "failed" and entry["error"] == "internal-error"
