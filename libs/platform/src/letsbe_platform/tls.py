"""One verifying TLS context per process, for every httpx client it builds.

httpx builds a context for each client that is not given one, whatever its URL (plain HTTP included), and building
one loads the CA bundle: ~50 ms of CPU and ~0.8 MB. A client made per call, per page view, per readiness poll or per
webhook delivery paid that each time. A context is safe to share. ``tests/foundation/test_tls_contexts.py`` finds a
client built without it.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def client_context() -> ssl.SSLContext:
    """httpx's default context (certifi's CAs, or SSL_CERT_FILE / SSL_CERT_DIR as read at the first call)."""
    return httpx.create_ssl_context()
