"""Read the certificate a server actually serves for a name (SNI), not what certbot believes it installed."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from datetime import datetime

from cryptography import x509


class TlsProbeError(Exception):
    pass


def _context() -> ssl.SSLContext:
    # No verification on purpose: an expired or mismatched certificate must still be read to be reported. So no CA
    # bundle either (create_default_context would load the system's at every start, for nothing).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


_CTX = _context()


async def served_not_after(server_name: str, *, connect_host: str | None, port: int, timeout: float) -> datetime:
    """notAfter (UTC) of the certificate served to a client that asks for ``server_name``."""
    host = connect_host or server_name
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=_CTX, server_hostname=server_name)
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        raise TlsProbeError(f"{server_name}: {type(exc).__name__}: {exc}") from exc
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            raise TlsProbeError(f"{server_name}: no certificate served")
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise TlsProbeError(f"{server_name}: unreadable certificate: {exc}") from exc
        return cert.not_valid_after_utc
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await writer.wait_closed()
        del reader
