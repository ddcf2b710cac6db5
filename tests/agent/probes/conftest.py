"""Real local targets for the probe tests: HTTP(S) servers, certificates, closed ports, specs."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.wire import CheckSpec, CheckType

MakeSpec = Callable[..., CheckSpec]
ServeApp = Callable[..., Awaitable[str]]


@pytest.fixture
def make_spec() -> MakeSpec:
    """A CheckSpec with test defaults: `make_spec(CheckType.TCP, host=…, port=…)`."""

    def make(check_type: CheckType = CheckType.UPTIME, **fields: Any) -> CheckSpec:
        fields.setdefault("timeout", 5)
        return CheckSpec(id=1, type=check_type, interval=60, **fields)

    return make


@pytest.fixture
def closed_port() -> int:
    """A local TCP/UDP port number that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def serve_app() -> AsyncIterator[ServeApp]:
    """Starts an aiohttp app on 127.0.0.1 (with TLS when given a context); returns its base URL."""
    runners: list[web.AppRunner] = []

    async def serve(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> str:
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"

    yield serve
    for runner in runners:
        await runner.cleanup()


# --- certificates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerCert:
    cert_file: Path
    key_file: Path
    not_after: dt.datetime
    issuer_cn: str

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@dataclass(frozen=True)
class Pki:
    ca_pem: str
    valid: ServerCert  # signed by the CA, valid for 127.0.0.1 for 30 more days
    expired: ServerCert  # signed by the CA, expired 3 days (and an hour) ago
    self_signed: ServerCert  # valid dates, but no CA vouches for it


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    directory: Path,
    label: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
) -> ServerCert:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(f"probe-test-{label}")
    issuer_name, issuer_key = issuer or (subject, key)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{label}.crt", directory / f"{label}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    issuer_cn = issuer_name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return ServerCert(cert_file, key_file, not_after.replace(microsecond=0), str(issuer_cn))


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Probe Test CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=60))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca = (ca_name, ca_key)
    day = dt.timedelta(days=1)
    return Pki(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM).decode(),
        valid=_issue(directory, "valid", now - day, now + 30 * day, ca),
        expired=_issue(directory, "expired", now - 30 * day, now - 3 * day - dt.timedelta(hours=1), ca),
        self_signed=_issue(directory, "self-signed", now - day, now + 30 * day, None),
    )
