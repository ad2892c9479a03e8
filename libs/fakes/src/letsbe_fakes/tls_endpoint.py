"""A TLS listener on loopback that serves, per SNI name, a certificate generated on the fly — a tenant's nginx as
seen from outside, for the monitor's certificate-expiry checks (tests and the sandbox).

``with FakeTlsEndpoint() as ep: ep.serve("files.example.com", not_after=...)``; connect to ``ep.host:ep.port`` with
that server name and the handshake presents that certificate (self-signed, EC P-256). Unknown names get the
default certificate, as an nginx default server would. ``handshakes`` lists the SNI names clients asked for.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(
    name: str, not_after: dt.datetime, not_before: dt.datetime | None = None, also: tuple[str, ...] = ()
) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for ``name`` (and the names or IP addresses in ``also``), valid until
    ``not_after``."""
    key = ec.generate_private_key(ec.SECP256R1())
    not_before = not_before or min(dt.datetime.now(dt.UTC), not_after) - dt.timedelta(days=1)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in (name, *also)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _general_name(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


class FakeTlsEndpoint:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self._dir = Path(tempfile.mkdtemp(prefix="letsbe-tls-"))
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self.handshakes: list[str | None] = []
        self._default = self._context("default.invalid", dt.datetime.now(dt.UTC) + dt.timedelta(days=365))
        self._default.sni_callback = self._pick
        self._sock = socket.create_server((host, port))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"fake-tls-{self.port}", daemon=True)

    def serve(self, name: str, not_after: dt.datetime) -> None:
        """Serve a fresh certificate for ``name`` expiring at ``not_after`` (replaces the previous one: a renewal)."""
        ctx = self._context(name, not_after)
        with self._lock:
            self._contexts[name.lower()] = ctx

    def _context(self, name: str, not_after: dt.datetime) -> ssl.SSLContext:
        cert, key = self_signed(name, not_after)
        stem = self._dir / f"{name}-{len(list(self._dir.iterdir()))}"
        stem.with_suffix(".crt").write_bytes(cert)
        stem.with_suffix(".key").write_bytes(key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(stem.with_suffix(".crt"), stem.with_suffix(".key"))
        return ctx

    def _pick(self, sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        with self._lock:
            self.handshakes.append(name)
            chosen = self._contexts.get((name or "").lower())
        if chosen is not None:
            sslobj.context = chosen

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handshake, args=(conn,), daemon=True).start()

    def _handshake(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with contextlib.suppress(OSError, ssl.SSLError), self._default.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)  # wait for the client to finish (it closes right after reading the certificate)

    def start(self) -> FakeTlsEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> FakeTlsEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
