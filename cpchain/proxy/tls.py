"""TLS without a CA: the proxy's self-signed certificate, and client connections pinned to it.

Owns creating the proxy's key and certificate (key file mode 0600, created once), the
certificate fingerprint (SHA-256 of the DER encoding, published in the proxy's signed DHT
record), and client sockets/HTTPS connections that refuse any other certificate before a
single byte of the request is sent. Must not import Twisted (clients use plain sockets).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import os
import re
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cpchain.fsutil import fsync_dir

_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
CERT_VALIDITY_DAYS = 3650


class PinMismatch(ssl.SSLError):
    """The server presented a certificate other than the pinned one."""


def fingerprint_of_der(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def fingerprint_of_pem(pem: bytes) -> str:
    return fingerprint_of_der(x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER))


def is_fingerprint(value: object) -> bool:
    return isinstance(value, str) and _FINGERPRINT.fullmatch(value) is not None


def ensure_certificate(cert_path: Path, key_path: Path, common_name: str) -> str:
    """Create a self-signed P-256 certificate and key unless both exist; return the fingerprint.

    The key is written with O_EXCL and mode 0600 and never overwritten; an existing key whose
    mode lets others read it is refused rather than used.
    """
    if key_path.exists() and cert_path.exists():
        if key_path.stat().st_mode & 0o077:
            raise PermissionError(f"{key_path}: TLS key is accessible by others (chmod 600)")
        return fingerprint_of_pem(cert_path.read_bytes())
    if key_path.exists() != cert_path.exists():
        missing = cert_path if key_path.exists() else key_path
        raise FileNotFoundError(f"{missing}: TLS certificate and key must both exist (remove the other to regenerate)")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_VALIDITY_DAYS))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
        fh.flush()
        os.fsync(fh.fileno())
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fsync_dir(cert_path.parent)
    return fingerprint_of_der(cert.public_bytes(serialization.Encoding.DER))


def client_context() -> ssl.SSLContext:
    """A context that accepts the handshake so the certificate can be compared to the pin.

    Chain validation is replaced by the pin check in `check_pin`, which every connection
    made here performs before sending anything.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def check_pin(sock: ssl.SSLSocket, fingerprint: str) -> None:
    der = sock.getpeercert(binary_form=True)
    if der is None or not hmac.compare_digest(fingerprint_of_der(der), fingerprint.lower()):
        sock.close()
        raise PinMismatch("the server's TLS certificate is not the pinned one")


def connect_pinned(host: str, port: int, fingerprint: str, timeout: float) -> ssl.SSLSocket:
    """A TLS socket to host:port whose certificate matches `fingerprint`."""
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        sock = client_context().wrap_socket(raw, server_hostname=host if not _is_ip(host) else None)
    except BaseException:
        raw.close()
        raise
    check_pin(sock, fingerprint)
    return sock


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """http.client over TLS, pinned: connect() fails before the request if the pin differs.

    `address` (an IP the caller already vetted, e.g. by a fetch policy) is where the socket
    goes; `host` stays the name used in the Host header, so a DNS answer that changes
    between the check and the connection cannot redirect it.
    """

    def __init__(self, host: str, port: int, fingerprint: str, *, timeout: float, address: str | None = None,
                 blocksize: int = 1 << 20) -> None:  # fmt: skip
        super().__init__(host, port, timeout=timeout, context=client_context(), blocksize=blocksize)
        self.fingerprint = fingerprint
        self.address = address or host

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            assert self._context is not None  # type: ignore[attr-defined]
            sock = self._context.wrap_socket(  # type: ignore[attr-defined]
                raw, server_hostname=None if _is_ip(self.host) else self.host
            )
        except BaseException:
            raw.close()
            raise
        check_pin(sock, self.fingerprint)
        self.sock = sock


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True
