"""The tenant's secret store file (letsbe_agent.secret_store): what the Safety Wrapper writes the Secrets Proxy reads,
a store of another shape is refused with the path and what is wrong (never a value), and a store only the previous
key opens is said to need re-encrypting."""

import json

import pytest

from letsbe_agent import fernet, secret_store
from letsbe_agent.secret_store import StoredSecret


def test_what_is_written_is_read_back_and_only_its_owner_can_read_the_file(tmp_path):
    key, path = fernet.generate_key(), tmp_path / "secrets" / "secrets.enc"
    secret_store.write(path, key, {"ghost_admin": StoredSecret("s3cret-value", ("ghost", "n8n"))})
    assert path.stat().st_mode & 0o777 == 0o600
    assert secret_store.read(path, key) == ({"ghost_admin": StoredSecret("s3cret-value", ("ghost", "n8n"))}, False)
    assert json.loads(fernet.decrypt(key, path.read_bytes())) == {
        "version": 1, "secrets": {"ghost_admin": {"value": "s3cret-value", "tools": ["ghost", "n8n"]}}}


def test_a_store_under_the_previous_key_is_read_and_flagged(tmp_path):
    old, new, path = fernet.generate_key(), fernet.generate_key(), tmp_path / "secrets.enc"
    secret_store.write(path, old, secret_store.values({"a": "value-a"}))
    assert secret_store.read(path, new, old) == ({"a": StoredSecret("value-a")}, True)
    with pytest.raises(ValueError, match="wrong key"):
        secret_store.read(path, new)
    assert secret_store.opens_with(path.read_bytes(), old) and not secret_store.opens_with(path.read_bytes(), new)
    assert not secret_store.opens_with(b"not a token", old)


@pytest.mark.parametrize(("doc", "why"), [
    ({"version": 2, "secrets": {}}, "version"),
    ({"secrets": {}}, "version"),
    ({"version": 1, "secrets": {"a": {"tools": []}}}, "value"),
    ({"version": 1, "secrets": {"a": {"value": ""}}}, "value"),
    ({"version": 1, "secrets": {"a": {"value": "s3cret-value", "extra": 1}}}, "extra"),
    ({"version": 1, "secrets": {"bad name": {"value": "s3cret-value"}}}, "secrets"),
    ({"version": 1, "secrets": {"a": {"value": "s3cret-value", "tools": "ghost"}}}, "tools"),
    ({"version": 1, "secrets": ["s3cret-value"]}, "secrets"),
])
def test_a_store_of_another_shape_is_refused_without_its_values(tmp_path, doc, why):
    key, path = fernet.generate_key(), tmp_path / "secrets.enc"
    path.write_bytes(fernet.encrypt(key, json.dumps(doc).encode()))
    with pytest.raises(ValueError, match=why) as caught:
        secret_store.read(path, key)
    assert str(path) in str(caught.value) and "s3cret" not in str(caught.value)


def test_a_store_that_is_not_json_is_refused(tmp_path):
    key, path = fernet.generate_key(), tmp_path / "secrets.enc"
    path.write_bytes(fernet.encrypt(key, b"{not json"))
    with pytest.raises(ValueError, match="not JSON"):
        secret_store.read(path, key)
