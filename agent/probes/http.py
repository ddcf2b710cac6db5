"""Uptime check over HTTP(S): status, content, timings and the server's certificate.

Every probe opens a fresh connection on a connector of its own that closes after use: the
handshakes are measured each time, and a kept-alive connection cannot hide an outage. The address
policy runs in the connector's socket factory, which sees every address right before it is
connected to (resolved names, IP literals and redirect targets alike).
"""

from __future__ import annotations

import base64
import errno
import functools
import re
import socket
import ssl
import time
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.connector import Connection
from yarl import URL

from agent.probes._address import refusal
from agent.probes._certs import CertificateInfo, certificate_info, fetch_certificate, rfc3339
from agent.probes._context import Outcome, ProbeContext, ProbeFailure, ms, os_error_text, shorten
from shared.wire import CheckSpec

# OpenSSL's X509_V_ERR_CERT_HAS_EXPIRED: worth a clearer message than "certificate verify failed".
_CERT_HAS_EXPIRED = 10
_MAX_REDIRECTS = 10


async def probe(spec: CheckSpec, ctx: ProbeContext) -> Outcome:
    url = _target_url(spec)
    timeline = _Timeline(ctx)
    connector = aiohttp.TCPConnector(
        force_close=True, use_dns_cache=False, socket_factory=timeline.open_socket
    )
    session = aiohttp.ClientSession(
        connector=connector,
        trace_configs=[timeline.trace_config()],
        response_class=_PeerAwareResponse,
        # The dispatcher bounds the whole probe; aiohttp's own timeouts would only compete.
        timeout=aiohttp.ClientTimeout(total=None),
    )
    try:
        async with (
            session,
            session.request(
                spec.http_method.upper(),
                url,
                headers=_headers(spec),
                data=spec.http_body.encode() if spec.http_body is not None else None,
                allow_redirects=spec.http_follow_redirects,
                max_redirects=_MAX_REDIRECTS,
                ssl=_ssl_setting(spec),
            ) as response,
        ):
            assert isinstance(response, _PeerAwareResponse)
            _describe_response(response, ctx)
            body, truncated = await _read_capped(response, spec.max_response_bytes)
            ctx.details.update(body_bytes=len(body), truncated=truncated)
            return _judge(spec, response, body)
    except aiohttp.ClientConnectorCertificateError as exc:
        raise ProbeFailure(await _certificate_error(exc, timeline, ctx)) from exc
    except aiohttp.ClientError as exc:
        raise ProbeFailure(_client_error_text(exc, timeline)) from exc
    finally:
        timeline.report()


def _target_url(spec: CheckSpec) -> URL:
    if not spec.url:
        raise ProbeFailure("uptime check needs a URL")
    try:
        url = URL(spec.url)
    except ValueError as exc:
        raise ProbeFailure(f"invalid URL: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ProbeFailure(f"invalid URL {spec.url!r}: expected http:// or https:// and a host")
    return url


def _headers(spec: CheckSpec) -> dict[str, str]:
    """The check's headers plus its credentials (aiohttp drops them on a redirect to another origin)."""
    headers = dict(spec.http_headers)
    method = spec.auth_method.lower()
    if method == "basic":
        credentials = f"{spec.auth_username or ''}:{spec.auth_password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
    elif method == "bearer":
        headers["Authorization"] = f"Bearer {spec.auth_bearer_token or ''}"
    elif method not in ("none", ""):
        raise ProbeFailure(f"unknown auth method {spec.auth_method!r}")
    return headers


def _ssl_setting(spec: CheckSpec) -> ssl.SSLContext | bool:
    """False skips verification; True is aiohttp's verifying default; a context adds the check's CA."""
    if not spec.ssl_verify:
        return False
    if spec.ssl_ca_pem:
        return _context_trusting(spec.ssl_ca_pem)
    return True


@functools.lru_cache(maxsize=32)
def _context_trusting(ca_pem: str) -> ssl.SSLContext:
    # Cached: loading the system store for every probe would cost more than the probe.
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cadata=ca_pem)
    except ssl.SSLError as exc:
        raise ProbeFailure(f"invalid ssl_ca_pem: {exc.reason or exc}") from exc
    return context


class _PeerAwareResponse(aiohttp.ClientResponse):
    """A response that remembers the connection it came over.

    aiohttp releases (here: closes) the connection as soon as a short body has arrived, often
    before the caller sees the response, so the peer is read at the start of the response.
    """

    peer_ip: str | None = None
    peer_certificate: CertificateInfo | None = None

    async def start(self, connection: Connection) -> aiohttp.ClientResponse:
        transport = connection.transport
        if transport is not None:
            peer = transport.get_extra_info("peername")
            self.peer_ip = str(peer[0]) if peer else None
            self.peer_certificate = certificate_info(transport.get_extra_info("ssl_object"))
        return await super().start(connection)


def _describe_response(response: _PeerAwareResponse, ctx: ProbeContext) -> None:
    ctx.details["ip"] = response.peer_ip
    if response.history:
        ctx.details.update(redirects=len(response.history), final_url=str(response.url))
    cert = response.peer_certificate
    if cert is not None:
        _describe_certificate(cert, ctx)


def _describe_certificate(cert: CertificateInfo, ctx: ProbeContext) -> None:
    now = datetime.now(timezone.utc)
    ctx.details.update(
        tls_expires_at=rfc3339(cert.expires_at),
        tls_issuer=cert.issuer,
        # Whole days, toward zero: -3 for "expired 3 days ago", as in the error.
        tls_days_left=int((cert.expires_at - now).total_seconds() / 86400),
    )


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether there was more."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), not response.content.at_eof()


def _judge(spec: CheckSpec, response: aiohttp.ClientResponse, body: bytes) -> Outcome:
    status = response.status
    error = _status_error(spec.expected_status_codes, status)
    if error is None and spec.content_match_enabled and spec.content_match_text:
        error = _content_error(spec, _decode(body, response.charset))
    return Outcome(success=error is None, error=error, status_code=status)


def _status_error(expected: list[int], status: int) -> str | None:
    if not expected:
        return None if 200 <= status < 400 else f"expected status 2xx or 3xx, got {status}"
    if status in expected:
        return None
    wanted = " or ".join(str(code) for code in expected)
    return f"expected status {wanted}, got {status}"


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


def _content_error(spec: CheckSpec, text: str) -> str | None:
    wanted = spec.content_match_text or ""
    kind = spec.content_match_type.lower()
    if kind == "regex":
        flags = 0 if spec.content_match_case_sensitive else re.IGNORECASE
        try:
            found = re.search(wanted, text, flags) is not None
        except re.error as exc:
            raise ProbeFailure(f'invalid pattern "{shorten(wanted)}": {exc}') from exc
        return None if found else f'pattern "{shorten(wanted)}" not matched'
    if kind not in ("contains", "not_contains"):
        raise ProbeFailure(f"unknown content match type {spec.content_match_type!r}")
    haystack, needle = (text, wanted) if spec.content_match_case_sensitive else (text.lower(), wanted.lower())
    found = needle in haystack
    if kind == "contains" and not found:
        return f'text "{shorten(wanted)}" not found'
    if kind == "not_contains" and found:
        return f'text "{shorten(wanted)}" found'
    return None


async def _certificate_error(
    exc: aiohttp.ClientConnectorCertificateError, timeline: _Timeline, ctx: ProbeContext
) -> str:
    """'certificate expired 3 days ago' where the handshake failed on expiry, else OpenSSL's reason."""
    cause = exc.certificate_error
    if not isinstance(cause, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {cause}"
    if cause.verify_code == _CERT_HAS_EXPIRED and timeline.last_ip is not None and exc.port is not None:
        # The failed handshake left no certificate behind; fetch it again to say how long ago.
        cert = await fetch_certificate(timeline.last_ip, exc.port, exc.host)
        if cert is not None:
            _describe_certificate(cert, ctx)
            expired = cert.expiry_error(datetime.now(timezone.utc))
            if expired is not None:
                return expired
    return f"certificate verify failed: {cause.verify_message}"


def _client_error_text(exc: aiohttp.ClientError, timeline: _Timeline) -> str:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"name not resolved: {exc.host}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return f"TLS handshake failed: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if timeline.refusals:
            return timeline.refusals[0]
        return os_error_text(exc.os_error)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection without a response"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return f"too many redirects (more than {_MAX_REDIRECTS})"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL: {exc}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"invalid response: {exc.message}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "response body cut short"
    if isinstance(exc, aiohttp.ClientOSError):
        return os_error_text(exc)
    return str(exc) or type(exc).__name__


class _TimedSocket(socket.socket):
    """A socket that notes when its TCP handshake completes.

    aiohttp connects the socket and then runs the TLS handshake over it, with no hook in between.
    The event loop either sees a non-blocking connect() succeed at once, or reads SO_ERROR when the
    socket turns writable: either moment is the end of the TCP handshake.
    """

    timeline: _Timeline | None = None

    def connect(self, address: Any) -> None:
        super().connect(address)  # raises BlockingIOError while the handshake is under way
        self._connected()

    def getsockopt(self, *args: Any) -> Any:
        if args[:2] == (socket.SOL_SOCKET, socket.SO_ERROR):
            self._connected()
        return super().getsockopt(*args)

    def _connected(self) -> None:
        if self.timeline is not None:
            self.timeline.tcp_connected()


class _Timeline:
    """Phase durations of one probe, summed over redirects: dns, connect, tls, ttfb, total.

    ttfb runs from the request being sent to the response headers arriving: the server's time.
    """

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx
        self.started = time.perf_counter()
        self.phases: dict[str, float] = {}
        self.refusals: list[str] = []
        self.last_ip: str | None = None
        self._is_tls = False
        self._dns_start = self._tcp_start = self._tcp_end = self._sent = 0.0

    def open_socket(self, addr_info: Any) -> socket.socket:
        """The connector's socket factory: vets the address, then starts the connect clock."""
        family, kind, proto, _, sockaddr = addr_info
        ip = str(sockaddr[0])
        refused = refusal(ip, self.ctx.allow_address)
        if refused is not None:
            self.refusals.append(refused)
            raise OSError(errno.EACCES, refused)
        self.last_ip = ip
        sock = _TimedSocket(family, kind, proto)
        sock.timeline = self
        if not self._tcp_start:
            self._tcp_start = time.perf_counter()
        return sock

    def tcp_connected(self) -> None:
        if not self._tcp_end:
            self._tcp_end = time.perf_counter()

    def trace_config(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()
        config.on_request_start.append(self._on_request_start)
        config.on_dns_resolvehost_start.append(self._on_dns_start)
        config.on_dns_resolvehost_end.append(self._on_dns_end)
        config.on_connection_create_start.append(self._on_connection_start)
        config.on_connection_create_end.append(self._on_connection_end)
        config.on_request_headers_sent.append(self._on_headers_sent)
        config.on_request_redirect.append(self._on_response_headers)
        config.on_request_end.append(self._on_response_headers)
        return config

    def report(self) -> None:
        timings = {phase: ms(seconds) for phase, seconds in self.phases.items()}
        timings["total"] = ms(time.perf_counter() - self.started)
        self.ctx.details["timings"] = timings

    def _add(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    async def _on_request_start(self, _s: object, _c: SimpleNamespace, params: Any) -> None:
        self._is_tls = params.url.scheme == "https"

    async def _on_dns_start(self, _s: object, _c: SimpleNamespace, _p: object) -> None:
        self._dns_start = time.perf_counter()

    async def _on_dns_end(self, _s: object, _c: SimpleNamespace, _p: object) -> None:
        self._add("dns", time.perf_counter() - self._dns_start)

    async def _on_connection_start(self, _s: object, _c: SimpleNamespace, _p: object) -> None:
        self._tcp_start = self._tcp_end = 0.0

    async def _on_connection_end(self, _s: object, _c: SimpleNamespace, _p: object) -> None:
        now = time.perf_counter()
        if not self._tcp_end:  # an event loop that bypasses the socket's methods
            self._add("connect", now - self._tcp_start)
            return
        self._add("connect", self._tcp_end - self._tcp_start)
        if self._is_tls:
            self._add("tls", now - self._tcp_end)

    async def _on_headers_sent(self, _s: object, _c: SimpleNamespace, _p: object) -> None:
        self._sent = time.perf_counter()

    async def _on_response_headers(self, _s: object, _c: SimpleNamespace, _p: object) -> None:
        self._add("ttfb", time.perf_counter() - self._sent)
