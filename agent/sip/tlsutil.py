"""TLS for the SIP responder: load a certificate, or make a self-signed one at startup."""

from __future__ import annotations

import datetime
import ipaddress
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from agent.tls import ssl_module

if TYPE_CHECKING:
    import ssl


def self_signed_pem(common_name: str = "qos-scout responder") -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for a fresh EC key, valid for a year, SAN 127.0.0.1/::1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(san, critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_context(cert_file: str | None = None, key_file: str | None = None) -> ssl.SSLContext:
    """A server context from files, or from a self-signed pair generated now."""
    ssl = ssl_module()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
        return ctx
    cert, key = self_signed_pem()
    with tempfile.TemporaryDirectory(prefix="qs-tls") as tmp:
        c, k = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        c.write_bytes(cert)
        k.write_bytes(key)
        k.chmod(0o600)
        ctx.load_cert_chain(str(c), str(k))
    return ctx
