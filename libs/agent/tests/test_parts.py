"""Small parts of the runtime: backoff, the usage ledger, the disk buffer, the credential file."""

import os
import random
import stat
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from letsbe_agent.buffer import DiskBuffer
from letsbe_agent.credentials import Credential, CredentialStore
from letsbe_agent.usage import UsageLedger
from letsbe_platform.waiting import FullJitter, jittered


def test_backoff_is_full_jitter_under_a_growing_capped_ceiling_and_resets():
    b = FullJitter(base=1, cap=8, rng=random.Random(7))
    for attempt in range(10):
        ceiling = min(8, 2**attempt)
        assert 0 <= b.next_delay() <= ceiling
    # over many draws the delays spread over the whole range, not around one value
    draws = [FullJitter(1, 8, random.Random(i)).next_delay() for i in range(200)]
    assert min(draws) < 0.1 and max(draws) > 0.9
    b.reset()
    assert b.next_delay() <= 1
    assert all(0.9 * 60 <= jittered(60, 0.1) <= 1.1 * 60 for _ in range(100))


def test_usage_ledger_shared_by_two_processes_seals_each_hour_once(tmp_path):
    path = tmp_path / "usage.sqlite3"
    proxy, reporter = UsageLedger(path), UsageLedger(path)  # two connections, as the two agents have
    hour = datetime(2026, 11, 27, 9, tzinfo=UTC)
    proxy.record(10, 5, "m1", at=hour + timedelta(minutes=1))
    proxy.record(20, 5, "m1", at=hour + timedelta(minutes=59))
    proxy.record(1, 1, "m2", at=hour + timedelta(minutes=30))
    now = hour + timedelta(hours=1, minutes=5)
    first = reporter.pending(now)
    assert [
        (r.sequence, [(line.model, line.tokens_in, line.tokens_out, line.requests) for line in r.lines]) for r in first
    ] == [(0, [("m1", 30, 10, 2), ("m2", 1, 1, 1)])]
    assert reporter.pending(now) == first  # not sent yet: the same report again, not a new one
    reporter.mark_sent(first[0].hour, 0)
    assert reporter.pending(now) == []
    proxy.record(3, 3, "m1", at=hour + timedelta(minutes=2))  # late
    late = reporter.pending(now)
    assert [(r.sequence, r.lines[0].tokens_in) for r in late] == [(1, 3)]
    assert late[0].wire()["hour"] == "2026-11-27T09:00:00+00:00"
    with pytest.raises(ValueError):
        proxy.record(-1, 0, "m1")


def test_usage_ledger_counts_a_summed_batch_as_the_calls_in_it(tmp_path):
    ledger = UsageLedger(tmp_path / "usage.sqlite3")
    hour = datetime(2026, 11, 27, 9, tzinfo=UTC)
    ledger.record(30, 10, "m1", at=hour, requests=3)
    ledger.record(1, 1, "m1", at=hour + timedelta(minutes=5))
    reports = ledger.pending(hour + timedelta(hours=1))
    assert [(ln.tokens_in, ln.tokens_out, ln.requests) for r in reports for ln in r.lines] == [(31, 11, 4)]
    with pytest.raises(ValueError):
        ledger.record(1, 1, "m1", requests=0)


def test_disk_buffer_keeps_order_and_replaces_by_key(tmp_path):
    buf = DiskBuffer(tmp_path / "outbox")
    buf.put("result", "a", "/x/a", {"n": 1})
    buf.put("backup", "2026-11-27", "/b", {"n": 2})
    buf.put("result", "a", "/x/a", {"n": 3})  # the same result again: one item, the newest
    items = buf.items()
    assert [(i.kind, i.body) for i in items] == [("backup", {"n": 2}), ("result", {"n": 3})]
    assert len(DiskBuffer(tmp_path / "outbox")) == 2  # survives a restart


def test_credential_file_is_private_and_never_printed(tmp_path):
    store = CredentialStore(tmp_path / "state" / "credential.json")
    cred = Credential(uuid.uuid4(), uuid.uuid4(), "lba_secret")
    store.save(cred)
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    os.chmod(store.path, 0o644)
    assert store.load() == cred
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600  # tightened again
    assert "lba_secret" not in repr(cred)
    store.delete()
    assert store.load() is None
