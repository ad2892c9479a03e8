"""The shipped policy table, per class and per autonomy level; the schema refuses unsafe policies."""

import json
from importlib import resources

import jsonschema
import pytest
from pydantic import ValidationError

from letsbe_safety_wrapper.tools.policy import (
    Decision,
    Policy,
    PolicyDocument,
    RiskClass,
    call_hash,
    policy_json_schema,
)

G, Y, YE, R, CR = (RiskClass.GREEN, RiskClass.YELLOW, RiskClass.YELLOW_EXTERNAL, RiskClass.RED,
                   RiskClass.CRITICAL_RED)
EXECUTE, GATE = Decision.EXECUTE, Decision.GATE_FOR_APPROVAL


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load()


# (tool, action, args, class): at least one row per class, plus the argument escalations.
CLASSIFICATION = [
    ("ghost", "posts.list", {}, G),
    ("nextcloud", "files.read", {"user": "agent", "path": "a.txt"}, G),
    ("ghost", "posts.create_draft", {"posts": [{"title": "Hi"}]}, Y),
    ("nextcloud", "shares.create", {"path": "/a", "shareType": 0}, Y),
    ("nextcloud", "shares.create", {"path": "/a", "shareType": 3}, YE),  # a public link leaves the tenant
    ("ghost", "posts.update", {"id": "1", "posts": [{"status": "draft"}]}, Y),
    ("ghost", "posts.update", {"id": "1", "posts": [{"status": "published"}]}, YE),
    ("ghost", "posts.publish", {"id": "1"}, YE),
    ("stalwart", "mail.send", {"to": "x@example.com"}, YE),
    ("chatwoot", "messages.reply", {"account_id": 1, "conversation_id": 2, "content": "hi"}, YE),
    ("ghost", "posts.create_draft", {"recipients": ["a@b.c"]}, YE),  # naming recipients is external
    ("nextcloud", "files.delete", {"user": "agent", "path": "a.txt"}, R),
    ("listmonk", "campaigns.start", {"id": 4, "status": "running"}, R),
    ("calcom", "bookings.create", {"amount": 250}, R),  # costly
    ("calcom", "bookings.create", {"amount": 20}, YE),
    ("ghost", "posts.delete", {"id": "1"}, CR),
    ("keycloak", "users.reset_password", {"realm": "r", "id": "u"}, CR),
    ("nextcloud", "trash.empty", {"user": "agent"}, CR),
    ("ghost", "posts.create_draft", {"posts": [{"html": "<p>x</p>; DROP TABLE users"}]}, CR),
    # unknown: fail closed
    ("ghost", "settings.wipe", {}, R),
    ("not_a_tool", "anything", {}, R),
    ("not_a_tool", "anything", {"cmd": "rm -rf /"}, CR),  # escalations apply to unknown calls too
]


@pytest.mark.parametrize(("tool", "action", "args", "expected"), CLASSIFICATION)
def test_policy_classifies_each_call_into_its_class(policy, tool, action, args, expected):
    assert policy.classify(tool, action, args).risk is expected


def test_unknown_calls_are_red_and_say_why(policy):
    c = policy.classify("ghost", "settings.wipe", {})
    assert c.risk is R and not c.known and any("unknown" in r for r in c.reasons)


# class x autonomy level → decision (the shipped levels: 1 supervised, 2 balanced, 3 trusted)
DECISIONS = {
    1: {G: EXECUTE, Y: GATE, YE: GATE, R: GATE, CR: GATE},
    2: {G: EXECUTE, Y: EXECUTE, YE: GATE, R: GATE, CR: GATE},
    3: {G: EXECUTE, Y: EXECUTE, YE: EXECUTE, R: GATE, CR: GATE},
}


@pytest.mark.parametrize(("level", "risk"), [(lv, c) for lv in DECISIONS for c in RiskClass])
def test_autonomy_level_decides_execute_or_gate_per_class(policy, level, risk):
    assert policy.decide(risk, level) is DECISIONS[level][risk]


def test_an_unknown_autonomy_level_gates_everything(policy):
    assert all(policy.decide(c, 99) is GATE for c in RiskClass)


def _doc(**override):
    raw = json.loads(resources.files("letsbe_safety_wrapper.tools").joinpath("policy.json").read_text())
    raw.update(override)
    return raw


def test_a_policy_that_lets_critical_red_run_unapproved_is_refused():
    levels = {"1": {"name": "yolo", "execute": ["GREEN", "CRITICAL_RED"]}}
    with pytest.raises(ValidationError, match="CRITICAL_RED must always be gated"):
        PolicyDocument.model_validate(_doc(autonomy_levels=levels, default_autonomy_level=1))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"default_autonomy_level": 7}, "default_autonomy_level"),
        ({"approval_ttl_seconds": {"RED": 60}}, "approval_ttl_seconds needs a value"),
        ({"escalations": [{"when": [{"arg": "x", "regex": "("}], "class": "RED", "reason": "r"}]}, "regex"),
        ({"escalations": [{"when": [{"arg": "x", "equals": 1, "gt": 2}], "class": "RED", "reason": "r"}]},
         "exactly one"),
        ({"tools": {"ghost": {"actions": {"x": {"class": "PURPLE"}}}}}, "class"),
        ({"tools": {"ghost": {"actions": {"x": {"class": "GREEN"}}}}}, "needs an http route"),
    ],
)
def test_invalid_policies_are_refused_with_a_reason(override, message):
    with pytest.raises(ValidationError, match=message):
        PolicyDocument.model_validate(_doc(**override))


def test_shipped_schema_file_matches_the_model_and_validates_the_shipped_policy():
    files = resources.files("letsbe_safety_wrapper.tools")
    schema = json.loads(files.joinpath("policy.schema.json").read_text())
    assert schema == json.loads(json.dumps(policy_json_schema())), "regenerate: python -m ...tools.policy"
    jsonschema.validate(json.loads(files.joinpath("policy.json").read_text()), schema)


def test_call_hash_is_independent_of_key_order_but_not_of_values():
    a = call_hash("ghost", "posts.update", {"id": "1", "posts": [{"title": "A", "status": "draft"}]})
    b = call_hash("ghost", "posts.update", {"posts": [{"status": "draft", "title": "A"}], "id": "1"})
    c = call_hash("ghost", "posts.update", {"id": "1", "posts": [{"title": "B", "status": "draft"}]})
    d = call_hash("ghost", "posts.publish", {"id": "1", "posts": [{"title": "A", "status": "draft"}]})
    assert a == b and len({a, c, d}) == 3
