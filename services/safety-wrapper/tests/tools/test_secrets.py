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
