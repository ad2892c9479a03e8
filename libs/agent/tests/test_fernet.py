"""The agents' Fernet is the Fernet spec: tokens interchange with ``cryptography``'s both ways, and a changed
token or the wrong key is refused before anything is decrypted."""

import base64

import pytest
from cryptography.fernet import Fernet

from letsbe_agent import fernet


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000, 65536])
def test_tokens_interchange_with_cryptography(size):
    key = Fernet.generate_key()
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert fernet.decrypt(key.decode(), Fernet(key).encrypt(data)) == data
    assert Fernet(key).decrypt(fernet.encrypt(key, data)) == data


def test_a_changed_token_or_another_key_is_refused():
    key = fernet.generate_key()
    token = bytearray(base64.urlsafe_b64decode(fernet.encrypt(key, b"the secret store")))
    token[30] ^= 1  # one bit of the ciphertext
    with pytest.raises(fernet.InvalidToken):
        fernet.decrypt(key, base64.urlsafe_b64encode(bytes(token)))
    with pytest.raises(fernet.InvalidToken):
        fernet.decrypt(fernet.generate_key(), fernet.encrypt(key, b"the secret store"))
    for junk in (b"", b"not base64 !!", base64.urlsafe_b64encode(b"\x80" + b"\0" * 40)):
        with pytest.raises(fernet.InvalidToken):
            fernet.decrypt(key, junk)


def test_a_malformed_key_is_a_clear_error():
    with pytest.raises(ValueError, match="32 url-safe base64"):
        fernet.check_key("short")
