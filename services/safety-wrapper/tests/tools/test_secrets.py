"""The secret store is encrypted at rest; SECRET_REF resolves only for bound tools; values are scrubbed back."""

import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from letsbe_safety_wrapper.tools.errors import SecretNotBound, UnknownSecret
from letsbe_safety_wrapper.tools.secrets import SecretStore


@pytest.fixture
def store(tmp_path, secrets_key):
    s = SecretStore(tmp_path / "secrets.enc", secrets_key)
    s.put("ghost_key", "ghost-admin-key-0123456789abcdef", ["ghost"])
    s.put("shared", "shared-value-9876543210", ["ghost", "nextcloud"])
    return s


def test_store_file_is_encrypted_and_private(store):
    raw = store.path.read_bytes()
    assert b"ghost-admin-key" not in raw and b"ghost_key" not in raw
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"


def test_store_cannot_be_read_with_another_key(store):
    with pytest.raises(ValueError, match="cannot decrypt"):
        SecretStore(store.path, Fernet.generate_key().decode())


def test_a_store_under_the_previous_key_is_re_encrypted_under_the_new_key_without_losing_a_secret(store):
    old = store._key
    new = Fernet.generate_key().decode()
    rotated = SecretStore(store.path, new, previous_key=old)  # what the wrapper does at start during a rotation
    assert {s.name: s.value for s in rotated.values()} == {s.name: s.value for s in store.values()}
    assert SecretStore(store.path, new).get("ghost_key").value == "ghost-admin-key-0123456789abcdef"
    with pytest.raises(ValueError, match="cannot decrypt"):
        SecretStore(store.path, old)  # the old key opens nothing any more
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in store.path.parent.iterdir()] == ["secrets.enc"]  # no temp file left
    # Loading again (a restart before the provisioner dropped the previous key) changes nothing.
    token = store.path.read_bytes()
    SecretStore(store.path, new, previous_key=old)
    assert store.path.read_bytes() == token


def test_a_crash_while_re_encrypting_leaves_a_store_one_key_opens_and_the_next_load_finishes(store, monkeypatch):
    old, new = store._key, Fernet.generate_key().decode()
    before = store.path.read_bytes()

    def crash(src, dst):  # the process dies between writing the new file and renaming it over the old one
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        SecretStore(store.path, new, previous_key=old)
    monkeypatch.undo()
    assert store.path.read_bytes() == before  # the whole old store, which the old key opens
    assert SecretStore(store.path, old).get("shared").value == "shared-value-9876543210"
    assert [p.name for p in store.path.parent.iterdir()] == ["secrets.enc"]
    SecretStore(store.path, new, previous_key=old)  # the retry
    assert SecretStore(store.path, new).get("shared").value == "shared-value-9876543210"


def test_neither_key_opening_the_store_is_an_error_not_a_new_empty_store(store):
    with pytest.raises(ValueError, match="previous key"):
        SecretStore(store.path, Fernet.generate_key().decode(), previous_key=Fernet.generate_key().decode())
    assert SecretStore(store.path, store._key).get("ghost_key") is not None


def test_substitution_only_for_tools_the_secret_is_bound_to(store):
    args = {"auth": "Bearer SECRET_REF(ghost_key)", "nested": [{"x": "SECRET_REF(shared)"}]}
    out = store.substitute("ghost", args)
    assert out == {"auth": "Bearer ghost-admin-key-0123456789abcdef", "nested": [{"x": "shared-value-9876543210"}]}
    assert args["auth"] == "Bearer SECRET_REF(ghost_key)"  # the caller's copy is untouched
    with pytest.raises(SecretNotBound):
        store.substitute("nextcloud", args)
    with pytest.raises(UnknownSecret):
        store.substitute("ghost", {"a": "SECRET_REF(nope)"})


def test_scrub_turns_values_back_into_references(store):
    body = {"config": {"admin_key": "ghost-admin-key-0123456789abcdef", "note": "x shared-value-9876543210 y"}}
    assert store.scrub(body) == {"config": {"admin_key": "SECRET_REF(ghost_key)", "note": "x SECRET_REF(shared) y"}}


def test_cli_sets_lists_and_removes_without_printing_values(tmp_path, secrets_key):
    env = {**os.environ, "LETSBE_SW_SECRETS_KEY": secrets_key, "LETSBE_SW_SECRETS_PATH": str(tmp_path / "s.enc")}
    cli = [sys.executable, "-m", "letsbe_safety_wrapper.tools.secrets"]
    r = subprocess.run([*cli, "set", "smtp_pw", "--tools", "stalwart"], input="very-secret-smtp\n", env=env,
                       capture_output=True, text=True, check=True)
    assert "very-secret-smtp" not in r.stdout
    listed = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True, check=True).stdout
    assert listed.strip() == "smtp_pw\tstalwart"
    assert SecretStore(tmp_path / "s.enc", secrets_key).get("smtp_pw").value == "very-secret-smtp"
    subprocess.run([*cli, "remove", "smtp_pw"], env=env, capture_output=True, check=True)
    assert SecretStore(tmp_path / "s.enc", secrets_key).names() == []
