"""The uptime probe against local HTTPS servers with certificates made for the test."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from aiohttp import web

from agent.probes import run_probe

if TYPE_CHECKING:  # pytest imports the conftest itself; the names are only annotations here
    from tests.agent.probes.conftest import MakeSpec, Pki, ServeApp, ServerCert


async def _https_site(serve_app: ServeApp, cert: ServerCert) -> str:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="secure hello")

    app = web.Application()
    app.router.add_get("/", hello)
    return await serve_app(app, ssl_context=cert.server_context()) + "/"


def _parsed(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_a_trusted_certificate_reports_expiry_issuer_and_tls_time(
    serve_app: ServeApp, pki: Pki, make_spec: MakeSpec
) -> None:
    url = await _https_site(serve_app, pki.valid)

    result = await run_probe(make_spec(url=url, ssl_ca_pem=pki.ca_pem))

    assert result.success, result.error
    assert _parsed(result.details["tls_expires_at"]) == pki.valid.not_after
    assert result.details["tls_issuer"] == "CN=Probe Test CA"
    assert result.details["tls_days_left"] in (29, 30)
    assert {"connect", "tls", "ttfb", "total"} <= set(result.details["timings"])
    assert result.details["timings"]["tls"] > 0


async def test_an_expired_certificate_fails_saying_how_long_ago(
    serve_app: ServeApp, pki: Pki, make_spec: MakeSpec
) -> None:
    url = await _https_site(serve_app, pki.expired)

    result = await run_probe(make_spec(url=url, ssl_ca_pem=pki.ca_pem))

    assert not result.success
    assert result.error == "certificate expired 3 days ago"
    assert _parsed(result.details["tls_expires_at"]) == pki.expired.not_after


async def test_a_self_signed_certificate_fails_verification(
    serve_app: ServeApp, pki: Pki, make_spec: MakeSpec
) -> None:
    url = await _https_site(serve_app, pki.self_signed)

    result = await run_probe(make_spec(url=url))

    assert not result.success
    # OpenSSL 3 writes "self-signed", OpenSSL 1.1 "self signed".
    assert result.error in (
        "certificate verify failed: self-signed certificate",
        "certificate verify failed: self signed certificate",
    )


async def test_a_certificate_from_an_untrusted_ca_fails_verification(
    serve_app: ServeApp, pki: Pki, make_spec: MakeSpec
) -> None:
    url = await _https_site(serve_app, pki.valid)

    result = await run_probe(make_spec(url=url))

    assert not result.success
    assert result.error == "certificate verify failed: unable to get local issuer certificate"


async def test_without_verification_a_self_signed_site_is_up_and_its_expiry_still_known(
    serve_app: ServeApp, pki: Pki, make_spec: MakeSpec
) -> None:
    url = await _https_site(serve_app, pki.self_signed)

    result = await run_probe(make_spec(url=url, ssl_verify=False))

    assert result.success, result.error
    assert _parsed(result.details["tls_expires_at"]) == pki.self_signed.not_after
    assert result.details["tls_issuer"] == "CN=probe-test-self-signed"


async def test_without_verification_an_expired_certificate_is_reported_not_failed(
    serve_app: ServeApp, pki: Pki, make_spec: MakeSpec
) -> None:
    # ssl_verify=false means "do not fail on the certificate"; the expiry is still there to alert on.
    url = await _https_site(serve_app, pki.expired)

    result = await run_probe(make_spec(url=url, ssl_verify=False))

    assert result.success, result.error
    assert result.details["tls_days_left"] == -3
