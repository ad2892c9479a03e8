"""Fernet (https://github.com/fernet/spec) for the tenant's secret store, on the OpenSSL the interpreter already
has loaded for ``ssl``.

The ``cryptography`` package costs an agent about 8 MB resident (its Rust bindings), an eighth of the Secrets
Proxy's 64 MB limit, to decrypt one small file now and then. Fernet is AES-128-CBC with PKCS#7 padding and an
HMAC-SHA256 over the whole token: the MAC is checked with the standard library (in constant time) before anything
is decrypted, and the cipher is OpenSSL's EVP interface through ctypes. Tokens are interchangeable with
``cryptography.fernet.Fernet`` (the tests check both directions).
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import functools
import hashlib
import hmac
import os
import time

_VERSION = b"\x80"
_HEADER = 1 + 8 + 16  # version, timestamp, IV
_MAC = 32


class InvalidToken(ValueError):
    """Wrong key, or a token that was changed or is not a Fernet token."""


def generate_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def check_key(key: str | bytes) -> None:
    """ValueError unless ``key`` is a Fernet key."""
    _keys(key)


def encrypt(key: str | bytes, data: bytes) -> bytes:
    signing, enc = _keys(key)
    iv = os.urandom(16)
    body = _VERSION + int(time.time()).to_bytes(8, "big") + iv + _aes_cbc(enc, iv, data, encrypt=True)
    return base64.urlsafe_b64encode(body + hmac.new(signing, body, hashlib.sha256).digest())


def decrypt(key: str | bytes, token: bytes | str) -> bytes:
    body = verify(key, token)
    return _aes_cbc(_keys(key)[1], body[9:_HEADER], body[_HEADER:], encrypt=False)


def verify(key: str | bytes, token: bytes | str) -> bytes:
    """The token's signed body if its MAC verifies under ``key`` (nothing decrypted), else InvalidToken."""
    signing, _ = _keys(key)
    try:
        raw = base64.urlsafe_b64decode(token)
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("not base64") from exc
    body, mac = raw[:-_MAC], raw[-_MAC:]
    if len(raw) < _HEADER + 16 + _MAC or raw[:1] != _VERSION or (len(body) - _HEADER) % 16:
        raise InvalidToken("not a Fernet token")
    if not hmac.compare_digest(hmac.new(signing, body, hashlib.sha256).digest(), mac):
        raise InvalidToken("the token does not match the key")
    return body


def _keys(key: str | bytes) -> tuple[bytes, bytes]:
    try:
        raw = base64.urlsafe_b64decode(key)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a Fernet key is 32 url-safe base64-encoded bytes") from exc
    if len(raw) != 32:
        raise ValueError("a Fernet key is 32 url-safe base64-encoded bytes")
    return raw[:16], raw[16:]


def _aes_cbc(key: bytes, iv: bytes, data: bytes, *, encrypt: bool) -> bytes:
    lib = _libcrypto()
    ctx = lib.EVP_CIPHER_CTX_new()
    if not ctx:
        raise MemoryError("EVP_CIPHER_CTX_new")
    try:
        out = ctypes.create_string_buffer(len(data) + 32)
        n, m = ctypes.c_int(0), ctypes.c_int(0)
        ok = (lib.EVP_CipherInit_ex(ctx, lib.EVP_aes_128_cbc(), None, key, iv, 1 if encrypt else 0) == 1
              and lib.EVP_CipherUpdate(ctx, out, ctypes.byref(n), data, len(data)) == 1
              and lib.EVP_CipherFinal_ex(ctx, ctypes.byref(out, n.value), ctypes.byref(m)) == 1)
        if not ok:  # decrypting: bad padding, which a token with a valid MAC never has
            raise InvalidToken("the token does not decrypt")
        return out.raw[: n.value + m.value]
    finally:
        lib.EVP_CIPHER_CTX_free(ctx)


@functools.cache
def _libcrypto() -> ctypes.CDLL:
    import _hashlib  # noqa: F401  (maps the interpreter's libcrypto into this process)

    with open("/proc/self/maps") as fh:
        path = next((line.split()[-1] for line in fh if "/libcrypto.so" in line), None)
    if path is None:
        from ctypes.util import find_library

        path = find_library("crypto")
    if path is None:
        raise RuntimeError("OpenSSL's libcrypto was not found")
    lib = ctypes.CDLL(path)
    p, c = ctypes.c_void_p, ctypes.c_char_p
    lib.EVP_CIPHER_CTX_new.restype = p
    lib.EVP_CIPHER_CTX_free.argtypes = [p]
    lib.EVP_aes_128_cbc.restype = p
    lib.EVP_CipherInit_ex.argtypes = [p, p, p, c, c, ctypes.c_int]
    lib.EVP_CipherUpdate.argtypes = [p, p, ctypes.POINTER(ctypes.c_int), c, ctypes.c_int]
    lib.EVP_CipherFinal_ex.argtypes = [p, p, ctypes.POINTER(ctypes.c_int)]
    return lib
