"""The agents' lean bodies (letsbe_agent.wire, msgspec) and the hub's contract models (letsbe_contracts, pydantic)
have the same fields, accept and refuse the same samples, and read an accepted one to the same JSON: the two
cannot drift apart."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from letsbe_agent import wire
from letsbe_contracts import agent as contract
from letsbe_contracts import events

UUID = "6f1c1b8e-3a8e-4c1e-9a51-0d3a2e6c7b10"
WHEN = "2026-12-01T06:00:00Z"
DIGEST = "sha256:" + "a" * 64

DISK = {"path": "/", "total_bytes": 100, "used_bytes": 40, "percent": 40.0}
MEMORY = {"total_bytes": 100, "available_bytes": 60, "percent": 40}
CONTAINER = {"name": "letsbe-ghost", "image": "ghost:5", "image_digest": DIGEST, "state": "running",
             "health": "healthy", "restart_count": 2, "oom_killed": False}
DATABASE = {"status": "success", "size_mb": 1.5, "error": None}
SYNC = {"status": "skipped", "uploaded_mb": None, "error": None}
BACKUP = {"last_run": WHEN, "duration_seconds": 12, "databases": {"ghost": DATABASE}, "remote_sync": SYNC}
DETAILS = {"disk": DISK, "memory": MEMORY, "containers": [CONTAINER], "versions": {"safety-wrapper": "0.1.0"},
           "backup": BACKUP, "tls_not_after": WHEN}
COMMAND = {"id": UUID, "type": "config-sync", "params": {"version": 2}, "idempotency_key": "k-1",
           "expires_at": WHEN, "deadline_seconds": 60, "created_at": WHEN}

# (lean struct, contract model, a valid sample, samples that must be refused or accepted alike)
PAIRS: list[tuple[type, type, dict[str, Any], list[dict[str, Any]]]] = [
    (wire.DiskUsage, events.DiskUsage, DISK, [{**DISK, "percent": 100.5}, {**DISK, "used_bytes": -1}]),
    (wire.MemoryUsage, events.MemoryUsage, MEMORY, [{**MEMORY, "percent": -0.1}]),
    (wire.ContainerState, events.ContainerState, CONTAINER,
     [{**CONTAINER, "name": ""}, {**CONTAINER, "name": "x" * 256}, {**CONTAINER, "health": "sick"},
      {**CONTAINER, "state": "s" * 41}, {**CONTAINER, "image_digest": "d" * 201}, {**CONTAINER, "restart_count": -1}]),
    (wire.BackupDatabaseStatus, events.BackupDatabaseStatus, DATABASE,
     [{**DATABASE, "status": "ok"}, {**DATABASE, "size_mb": -1}, {**DATABASE, "error": "e" * 2001}]),
    (wire.RemoteSyncStatus, events.RemoteSyncStatus, SYNC, [{**SYNC, "status": "done"}]),
    (wire.BackupStatus, events.BackupStatus, BACKUP,
     [{**BACKUP, "last_run": "2026-12-01T06:00:00"}, {**BACKUP, "duration_seconds": -1},
      {**BACKUP, "databases": {"ghost": {"status": "success", "extra": 1}}}]),
    (wire.HeartbeatDetails, events.HeartbeatDetails, DETAILS,
     [{**DETAILS, "tls_not_after": "2026-12-01T06:00:00"}, {**DETAILS, "versions": {"a": 1}},
      {**DETAILS, "containers": [{**CONTAINER, "extra": 1}]}]),
    (wire.RegisterRequest, contract.RegisterRequest,
     {"registration_token": "t" * 16, "agent": "secrets-proxy", "version": "0.1.0", "hostname": "tenant-1"},
     [{"registration_token": "t" * 15, "agent": "secrets-proxy", "version": "0.1.0", "hostname": "h"},
      {"registration_token": "t" * 201, "agent": "secrets-proxy", "version": "0.1.0", "hostname": "h"},
      {"registration_token": "t" * 16, "agent": "mail", "version": "0.1.0", "hostname": "h"},
      {"registration_token": "t" * 16, "agent": "secrets-proxy", "version": "0.1 0", "hostname": "h"},
      {"registration_token": "t" * 16, "agent": "secrets-proxy", "version": "v" * 65, "hostname": "h"},
      {"registration_token": "t" * 16, "agent": "secrets-proxy", "version": "1", "hostname": "tenant_1"},
      {"registration_token": "t" * 15 + "\x00", "agent": "secrets-proxy", "version": "1", "hostname": "h"}]),
    (wire.RegisterResponse, contract.RegisterResponse,
     {"agent_id": UUID, "tenant_id": UUID, "api_key": "lba_x", "heartbeat_interval_seconds": 60},
     [{"agent_id": "not-a-uuid", "tenant_id": UUID, "api_key": "k", "heartbeat_interval_seconds": 60}]),
    (wire.RotatedCredential, contract.RotatedCredential, {"api_key": "lba_y", "previous_valid_until": WHEN},
     [{"api_key": "k", "previous_valid_until": "yesterday"}]),
    (wire.HeartbeatRequest, contract.HeartbeatRequest,
     {"seq": 7, "version": "0.1.0", "uptime_seconds": 12.5, "details": DETAILS},
     [{"seq": 0, "version": "1"}, {"seq": 2**62 + 1, "version": "1"}, {"seq": 1, "version": "1", "uptime_seconds": -1},
      {"seq": 1, "version": "1"}, {"seq": 1, "version": "1", "details": {**DETAILS, "versions": {"a": "b\x01"}}}]),
    (wire.CommandOut, contract.CommandOut, COMMAND,
     [{**COMMAND, "type": "Restart"}, {**COMMAND, "type": "x"}, {**COMMAND, "id": "nope"},
      {**COMMAND, "expires_at": "soon"}]),
    (wire.HeartbeatResponse, contract.HeartbeatResponse,
     {"interval_seconds": 30, "commands": [COMMAND], "details_wanted": True},
     [{"interval_seconds": 30}, {"interval_seconds": 30, "commands": [{**COMMAND, "type": "X"}]}]),
    (wire.CommandsResponse, contract.CommandsResponse, {"commands": [COMMAND]}, [{"commands": []}]),
    (wire.CommandAckResponse, contract.CommandAckResponse, {"run": True, "status": "DELIVERED"},
     [{"run": False, "status": "GONE"}, {"run": False, "status": "CANCELLED"}]),
    (wire.BackupReport, contract.BackupReport,
     {"report_date": "2026-12-01", "checked_at": WHEN, "status": BACKUP, "problem": None},
     [{"report_date": "2026-12-01", "checked_at": "2026-12-01T06:00:00"},
      {"report_date": "2026-12-01", "checked_at": WHEN, "problem": "p" * 2001},
      {"report_date": "2026-12-01", "checked_at": WHEN, "problem": "bad\x7f"}]),
    (wire.UpdateParams, contract.UpdateParams,
     {"component": "ghost", "image": "ghcr.io/letsbe/ghost", "digest": DIGEST, "version": "5.1",
      "container": "letsbe-ghost", "min_healthy_seconds": 30, "deadline_seconds": 300, "min_free_disk_bytes": 0},
     [{"component": "Ghost", "image": "ghost", "digest": DIGEST, "version": "5"},
      {"component": "ghost", "image": "Ghost", "digest": DIGEST, "version": "5"},
      {"component": "ghost", "image": "ghost", "digest": "sha256:abc", "version": "5"},
      {"component": "ghost", "image": "ghost", "digest": DIGEST, "version": "5", "container": "-x"},
      {"component": "ghost", "image": "ghost", "digest": DIGEST, "version": "5", "deadline_seconds": 0},
      {"component": "ghost", "image": "ghost", "digest": DIGEST, "version": "5", "min_healthy_seconds": 3601}]),
    (wire.RestartParams, contract.RestartParams, {"containers": ["letsbe-ghost"], "timeout_seconds": 5},
     [{"containers": []}, {"containers": ["c"] * 51}, {"containers": ["ok"], "timeout_seconds": 301},
      {"containers": ["bad name"]}]),
    (wire.ConfigSyncParams, contract.ConfigSyncParams, {"version": 3, "config": {"a": {"b": [1, "x"]}}},
     [{"version": 0, "config": {}}, {"version": 1, "config": {"a": "b\x00"}}, {"version": 1, "config": {"a\x1b": 1}}]),
    (wire.RotateCredentialParams, contract.RotateCredentialParams, {"credential": "llm-key"},
     [{}, {"credential": "root"}]),
]
IDS = [lean.__name__ for lean, *_ in PAIRS]


def _lean(kind: type, data: Any) -> Any:
    try:
        return wire.dump(wire.parse(kind, data))
    except ValueError:
        return None


def _contract(kind: Any, data: Any) -> Any:
    try:
        return kind.model_validate(data).model_dump(mode="json")
    except ValueError:
        return None


def _mutations(sample: dict[str, Any]) -> list[dict[str, Any]]:
    """Each field missing, of a wrong type, null; and an unknown field."""
    out = []
    for name in sample:
        out.append({k: v for k, v in sample.items() if k != name})
        out.append({**sample, name: [1]})
        out.append({**sample, name: None})
    out.append({**sample, "unknown_field": 1})
    return out


@pytest.mark.parametrize(("lean", "model", "valid", "others"), PAIRS, ids=IDS)
def test_the_lean_body_has_the_contract_models_fields(lean, model, valid, others):
    assert set(lean.__struct_fields__) == set(model.model_fields)
    assert set(valid) == set(model.model_fields)  # the valid sample sets every field


@pytest.mark.parametrize(("lean", "model", "valid", "others"), PAIRS, ids=IDS)
def test_the_lean_body_and_the_contract_model_agree_on_every_sample(lean, model, valid, others):
    assert _contract(model, valid) is not None, "the valid sample is valid"
    for sample in [valid, *_mutations(valid), *others]:
        lean_json, contract_json = _lean(lean, copy.deepcopy(sample)), _contract(model, copy.deepcopy(sample))
        assert (lean_json is None) == (contract_json is None), f"accepted by one only: {sample}"
        if lean_json is not None:
            assert json.loads(json.dumps(lean_json)) == contract_json, sample


def test_a_body_the_agent_built_is_checked_before_it_is_sent():
    body = wire.HeartbeatRequest(seq=0, version="0.1.0")  # constructing a struct does not validate
    with pytest.raises(ValueError, match="seq"):
        wire.checked(body)
    assert wire.checked(wire.HeartbeatRequest(seq=1, version="0.1.0")).seq == 1


def test_a_heartbeat_is_sent_without_its_empty_parts():
    body = wire.HeartbeatRequest(seq=1, version="0.1.0", details=wire.parse(wire.HeartbeatDetails,
                                                                            {"disk": DISK, "memory": MEMORY}))
    sent = json.loads(json.dumps(wire.dump(body, exclude_none=True)))
    assert "backup" not in sent["details"] and "tls_not_after" not in sent["details"]
    assert contract.HeartbeatRequest.model_validate(sent).model_dump(mode="json", exclude_none=True) == sent
