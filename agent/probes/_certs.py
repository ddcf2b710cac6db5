"""What a person wants to know about a server's TLS certificate: who issued it, when it ends."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography import x509


@dataclass(frozen=True)
class CertificateInfo:
    expires_at: datetime
    issuer: str

    def expiry_error(self, now: datetime) -> str | None:
        """'certificate expired 3 days ago', or None while it is still valid."""
        if now < self.expires_at:
            return None
        days = (now - self.expires_at).days
        if days == 0:
            return "certificate expired less than a day ago"
        return f"certificate expired {days} day{'s' if days != 1 else ''} ago"


def certificate_info(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> CertificateInfo | None:
    """The peer certificate's expiry and issuer, whether or not it was verified.

    `getpeercert()` returns an empty dict when verification is off, so the DER form is parsed
    instead: the expiry matters most exactly when someone turned verification off.
    """
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    return CertificateInfo(expires_at=cert.not_valid_after_utc, issuer=cert.issuer.rfc4514_string())


async def fetch_certificate(ip: str, port: int, server_name: str) -> CertificateInfo | None:
    """The certificate a server presents, read over a handshake that verifies nothing.

    Used only to explain a verification failure, never to accept the connection.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.open_connection(ip, port, ssl=context, server_hostname=server_name)
    except (OSError, ssl.SSLError):
        return None
    try:
        return certificate_info(writer.get_extra_info("ssl_object"))
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
