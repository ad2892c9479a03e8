"""One verifying TLS context per process for outbound HTTPS clients.

Building one loads the CA bundle (~50 ms of CPU); an ``httpx.AsyncClient`` without ``verify`` builds its own, so
every provider, relay or client started again (each hub start, each test) paid that. A context is safe to share.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def client_context() -> ssl.SSLContext:
    """httpx's default context (certifi's CAs, or SSL_CERT_FILE / SSL_CERT_DIR as read at the first call)."""
    return httpx.create_ssl_context()
