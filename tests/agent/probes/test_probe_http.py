"""The uptime (HTTP) probe against real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
from typing import TYPE_CHECKING

import pytest
from aiohttp import web

from agent.probes import refuse_non_public, run_probe
from shared.wire import CheckType

if TYPE_CHECKING:  # pytest imports the conftest itself; the names are only annotations here
    from tests.agent.probes.conftest import MakeSpec, ServeApp


def _target_app() -> web.Application:
    never = asyncio.Event()

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="Welcome to the test site")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status page")

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def redirect_loop(_: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def slow(_: web.Request) -> web.Response:
        await never.wait()  # answers only when the probe has long given up
        return web.Response(text="too late")

    async def protected(request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
        if request.headers.get("Authorization") != expected:
            raise web.HTTPUnauthorized()
        return web.Response(text="hello alice")

    async def bearer(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer tok-123":
            raise web.HTTPUnauthorized()
        return web.Response(text="hello token")

    async def echo(request: web.Request) -> web.Response:
        body = await request.text()
        return web.Response(text=f"{request.method} {request.headers.get('X-Probe')} {body}")

    async def large(_: web.Request) -> web.Response:
        return web.Response(body=b"a" * 2_000_000 + b"THE END")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/loop", redirect_loop)
    app.router.add_get("/slow", slow)
    app.router.add_get("/protected", protected)
    app.router.add_get("/bearer", bearer)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/large", large)
    return app


@pytest.fixture
async def base_url(serve_app: ServeApp) -> str:
    return await serve_app(_target_app())


async def test_a_healthy_page_succeeds_with_status_timings_and_address(
    base_url: str, make_spec: MakeSpec
) -> None:
    result = await run_probe(make_spec(url=f"{base_url}/ok"))

    assert result.success, result.error
    assert result.error is None
    assert result.status_code == 200
    assert result.details["ip"] == "127.0.0.1"
    timings = result.details["timings"]
    assert set(timings) == {"connect", "ttfb", "total"}  # an IP literal needs no DNS, plain HTTP no TLS
    assert all(value >= 0 for value in timings.values())
    assert timings["total"] >= timings["connect"] + timings["ttfb"]
    assert result.response_time_ms is not None
    assert result.response_time_ms >= timings["total"]


async def test_a_name_is_resolved_and_timed(base_url: str, make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(url=base_url.replace("127.0.0.1", "localhost") + "/ok"))

    assert result.success, result.error
    assert "dns" in result.details["timings"]
    assert result.details["ip"] in ("127.0.0.1", "::1")


async def test_unexpected_status_fails_naming_both_codes(base_url: str, make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(url=f"{base_url}/status/503", expected_status_codes=[200]))

    assert not result.success
    assert result.status_code == 503
    assert result.error == "expected status 200, got 503"


async def test_listed_status_codes_count_as_success(base_url: str, make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(url=f"{base_url}/status/404", expected_status_codes=[200, 404]))

    assert result.success
    assert result.status_code == 404


async def test_without_expected_codes_any_4xx_fails(base_url: str, make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(url=f"{base_url}/status/404"))

    assert not result.success
    assert result.error == "expected status 2xx or 3xx, got 404"


async def test_redirects_are_followed_by_default(base_url: str, make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(url=f"{base_url}/redirect", expected_status_codes=[200]))

    assert result.success, result.error
    assert result.details["redirects"] == 1
    assert result.details["final_url"] == f"{base_url}/ok"


async def test_a_redirect_not_followed_is_the_answer(base_url: str, make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(url=f"{base_url}/redirect", http_follow_redirects=False))

    assert result.success
    assert result.status_code == 302


async def test_a_redirect_loop_fails(base_url: str, make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(url=f"{base_url}/loop"))

    assert not result.success
    assert result.error == "too many redirects (more than 10)"


async def test_basic_auth_is_sent(base_url: str, make_spec: MakeSpec) -> None:
    url = f"{base_url}/protected"
    without = await run_probe(make_spec(url=url))
    wrong = await run_probe(make_spec(url=url, auth_method="basic", auth_username="alice", auth_password="x"))
    right = await run_probe(
        make_spec(url=url, auth_method="basic", auth_username="alice", auth_password="s3cret")
    )

    assert without.status_code == 401
    assert not without.success
    assert wrong.status_code == 401
    assert not wrong.success
    assert right.status_code == 200
    assert right.success


async def test_bearer_auth_is_sent(base_url: str, make_spec: MakeSpec) -> None:
    result = await run_probe(
        make_spec(url=f"{base_url}/bearer", auth_method="bearer", auth_bearer_token="tok-123")
    )

    assert result.success, result.error


async def test_method_headers_and_body_reach_the_server(base_url: str, make_spec: MakeSpec) -> None:
    spec = make_spec(
        url=f"{base_url}/echo",
        http_method="post",
        http_headers={"X-Probe": "yes"},
        http_body="ping-body",
        content_match_enabled=True,
        content_match_text="POST yes ping-body",
    )

    result = await run_probe(spec)

    assert result.success, result.error


@pytest.mark.parametrize(
    ("match_type", "text", "case_sensitive", "error"),
    [
        ("contains", "Welcome", True, None),
        ("contains", "Goodbye", True, 'text "Goodbye" not found'),
        ("contains", "welcome", True, 'text "welcome" not found'),
        ("contains", "WELCOME", False, None),
        ("not_contains", "Error", True, None),
        ("not_contains", "Welcome", True, 'text "Welcome" found'),
        ("not_contains", "TEST SITE", False, 'text "TEST SITE" found'),
        ("regex", r"Welcome to the \w+ site", True, None),
        ("regex", r"^welcome", False, None),
        ("regex", r"^welcome", True, 'pattern "^welcome" not matched'),
    ],
)
async def test_content_match(
    base_url: str, make_spec: MakeSpec, match_type: str, text: str, case_sensitive: bool, error: str | None
) -> None:
    spec = make_spec(
        url=f"{base_url}/ok",
        content_match_enabled=True,
        content_match_type=match_type,
        content_match_text=text,
        content_match_case_sensitive=case_sensitive,
    )

    result = await run_probe(spec)

    assert result.error == error
    assert result.success is (error is None)


async def test_an_invalid_pattern_fails_with_the_reason(base_url: str, make_spec: MakeSpec) -> None:
    spec = make_spec(
        url=f"{base_url}/ok", content_match_enabled=True, content_match_type="regex", content_match_text="(["
    )

    result = await run_probe(spec)

    assert not result.success
    assert result.error is not None
    assert result.error.startswith('invalid pattern "([": ')


async def test_the_body_is_read_up_to_the_cap_and_matched_on_what_was_read(
    base_url: str, make_spec: MakeSpec
) -> None:
    capped = make_spec(
        url=f"{base_url}/large",
        max_response_bytes=10_000,
        content_match_enabled=True,
        content_match_text="THE END",
    )
    whole = make_spec(
        url=f"{base_url}/large",
        content_match_enabled=True,
        content_match_text="THE END",
        max_response_bytes=4_000_000,
    )

    capped_result, whole_result = await run_probe(capped), await run_probe(whole)

    assert capped_result.details["body_bytes"] == 10_000
    assert capped_result.details["truncated"] is True
    assert capped_result.error == 'text "THE END" not found'
    assert whole_result.success, whole_result.error
    assert whole_result.details["body_bytes"] == 2_000_007
    assert whole_result.details["truncated"] is False


async def test_a_slow_server_times_out(base_url: str, make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(url=f"{base_url}/slow", timeout=1))

    assert not result.success
    assert result.error == "timed out after 1 s"
    assert "connect" in result.details["timings"]  # how far it got is kept


async def test_a_closed_port_is_connection_refused(closed_port: int, make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(url=f"http://127.0.0.1:{closed_port}/"))

    assert not result.success
    assert result.error == "connection refused"


async def test_an_unknown_name_is_not_resolved(make_spec: MakeSpec) -> None:
    result = await run_probe(make_spec(url="http://name-that-does-not-exist.invalid/", timeout=10))

    assert not result.success
    assert result.error == "name not resolved: name-that-does-not-exist.invalid"


async def test_loopback_is_refused_when_the_policy_says_so(base_url: str, make_spec: MakeSpec) -> None:
    by_ip = await run_probe(make_spec(url=f"{base_url}/ok"), allow_address=refuse_non_public)
    by_name = await run_probe(
        make_spec(url=base_url.replace("127.0.0.1", "localhost") + "/ok"), allow_address=refuse_non_public
    )

    assert not by_ip.success
    assert by_ip.error == "address 127.0.0.1 refused: loopback"
    assert not by_name.success
    assert by_name.error is not None
    assert by_name.error.endswith("refused: loopback")


async def test_a_redirect_target_is_vetted_too(serve_app: ServeApp, make_spec: MakeSpec) -> None:
    async def to_other_address(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.2:{request.url.port}/")

    app = web.Application()
    app.router.add_get("/", to_other_address)
    url = await serve_app(app)

    result = await run_probe(
        make_spec(url=url + "/"),
        allow_address=lambda ip: "not on the list" if str(ip) != "127.0.0.1" else None,
    )

    assert not result.success
    assert result.error == "address 127.0.0.2 refused: not on the list"


@pytest.mark.parametrize(
    ("url", "error"),
    [
        (None, "uptime check needs a URL"),
        ("ftp://example.com/", "invalid URL 'ftp://example.com/': expected http:// or https:// and a host"),
    ],
)
async def test_a_spec_without_a_usable_url_fails(make_spec: MakeSpec, url: str | None, error: str) -> None:
    result = await run_probe(make_spec(CheckType.UPTIME, url=url))

    assert not result.success
    assert result.error == error


async def test_each_probe_opens_a_fresh_connection(serve_app: ServeApp, make_spec: MakeSpec) -> None:
    peers: list[object] = []

    async def remember_peer(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", remember_peer)
    url = await serve_app(app)

    first, second = await run_probe(make_spec(url=url + "/")), await run_probe(make_spec(url=url + "/"))

    assert first.success
    assert second.success
    assert len(peers) == 2
    assert peers[0] != peers[1]
    assert "connect" in second.details["timings"]
