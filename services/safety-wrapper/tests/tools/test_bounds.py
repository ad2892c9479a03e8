"""What the gate holds in memory is bounded whatever the agent sends: the body of a call, and what the rate and
loop limits remember."""

from __future__ import annotations

import json

from letsbe_safety_wrapper.tools import limits
from letsbe_safety_wrapper.tools.errors import LoopDetected
from letsbe_safety_wrapper.tools.limits import CallLimiter
from letsbe_safety_wrapper.tools.policy import Limits


async def test_a_call_body_over_the_cap_is_413_problem_json_and_nothing_runs(wrapper):
    cap = wrapper.settings.max_request_bytes
    body = json.dumps({"tool": "ghost", "action": "echo", "args": {"text": "x" * cap}}).encode()
    seq = wrapper.tools.audit.seq
    r = await wrapper.client.post("/api/v1/tools/execute", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 413
    # Nothing ran, and the refusal is audited like every other outcome.
    assert wrapper.receiver.requests == [] and wrapper.tools.audit.seq == seq + 1

    async def chunked():  # no content-length: counted while it is read
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    r = await wrapper.client.post("/api/v1/tools/execute", content=chunked(),
                                  headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    assert wrapper.receiver.requests == [] and wrapper.tools.audit.seq == seq + 2
    ok = await wrapper.call("ghost", "echo", {"text": "x" * 1000})
    assert ok.status_code == 200, ok.text


def test_the_limiter_remembers_a_bounded_number_of_calls_and_tools(monkeypatch):
    monkeypatch.setattr(limits, "MAX_TRACKED", 100)
    clock = [0.0]
    limiter = CallLimiter(clock=lambda: clock[0])
    roomy = Limits(per_minute=10_000, loop_repeats=3, loop_window_seconds=3600)
    for i in range(1000):  # every call new, on ever new tool names
        clock[0] += 0.01
        limiter.check(f"tool{i}", f"call-{i}", roomy)
    assert len(limiter._by_call) == 100 and len(limiter._by_tool) == 100
    # The loop limit still holds for a call in use, however many others pass meanwhile.
    for _ in range(3):
        limiter.check("ghost", "stuck", roomy)
        for i in range(50):
            limiter.check("ghost", f"other-{i}-{_}", roomy)
    try:
        limiter.check("ghost", "stuck", roomy)
        raise AssertionError("the loop limit forgot a call in use")
    except LoopDetected:
        pass
