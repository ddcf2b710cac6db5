"""Whatever a client sends, the answer is a JSON error it can read, never a 500."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tests.support import make_person

pytestmark = pytest.mark.asyncio

VALID = {"name": "site", "type": "uptime", "url": "https://example.com", "interval": 60}

WEIRD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    -(2**63) - 1,
    1e308,
    0.5,
    "",
    "x" * 100_000,
    "\u0000",
    "💥",
    [],
    [None],
    {},
    {"a": {"b": {"c": []}}},
    "NaN",
    "1e999",
    [1] * 1000,
]


async def _assert_client_error(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert body["status_code"] == response.status_code
        assert isinstance(body["detail"], str)
        assert body["detail"]


async def test_every_field_with_every_weird_value_is_a_client_error(client: Any) -> None:
    member = await make_person(client, "member@example.com")
    fields = [
        "name",
        "type",
        "url",
        "host",
        "port",
        "interval",
        "timeout",
        "grace_period",
        "expected_status_codes",
        "content_match_type",
        "content_match_text",
        "http_headers",
        "check_source_critical",
        "assigned_agent_ids",
        "assigned_agent_id",
        "is_active",
        "degraded_threshold_ms",
        "organization_id",
        "dns_server",
        "http_method",
    ]
    for field in fields:
        for value in WEIRD_VALUES:
            response = await client.post("/api/checks/", json={**VALID, field: value}, headers=member.headers)
            await _assert_client_error(response)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b"[]", "application/json"),
        (b"null", "application/json"),
        (b'"a string"', "application/json"),
        (b"name=site&type=uptime", "application/x-www-form-urlencoded"),
        (b"name: site", "text/yaml"),
        (b"\xff\xfe\x00garbage", "application/json"),
        (json.dumps(VALID).encode(), "text/plain"),
        (b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--b--\r\n', "multipart/form-data; boundary=b"),
        (b"[" * 10_000 + b"]" * 10_000, "application/json"),
    ],
)
async def test_malformed_bodies_and_wrong_content_types_are_client_errors(
    client: Any, content: bytes, content_type: str
) -> None:
    member = await make_person(client, "member@example.com")
    for method, path in (("POST", "/api/checks/"), ("POST", "/api/users/me/tokens"), ("POST", "/api/auth/token")):
        response = await client.request(
            method, path, content=content, headers={**member.headers, "content-type": content_type}
        )
        await _assert_client_error(response)


async def test_a_body_over_the_size_limit_answers_413(client: Any) -> None:
    member = await make_person(client, "member@example.com")
    huge = {**VALID, "description": "x" * 2_000_000}
    response = await client.post("/api/checks/", json=huge, headers=member.headers)
    assert response.status_code == 413
    assert response.json()["status_code"] == 413


async def test_bad_path_and_query_values_are_client_errors(client: Any) -> None:
    member = await make_person(client, "member@example.com")
    for path in (
        "/api/checks/abc",
        "/api/checks/-1",
        "/api/checks/99999999999999999999999",
        "/api/checks/1.5",
        "/api/checks/?limit=1e9",
        "/api/checks/?offset=%00",
        "/api/users/me/tokens/x",
        "/api/nowhere",
    ):
        await _assert_client_error(await client.get(path, headers=member.headers))
        await _assert_client_error(await client.delete(path, headers=member.headers))
    odd_headers = [
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "a" * 10_000},
    ]
    for headers in odd_headers:
        await _assert_client_error(await client.get("/api/checks/", headers=headers))


async def test_randomly_mutated_check_bodies_never_cause_a_500(client: Any) -> None:
    member = await make_person(client, "member@example.com")
    rng = random.Random(20261129)
    base = {
        **VALID,
        "expected_status_codes": [200],
        "content_match_enabled": True,
        "content_match_text": "Welcome",
        "check_source_critical": {"geo:EU-PL": True},
    }
    keys = [*base, "port", "host", "send_text", "auth_method", "unknown_key"]
    for _ in range(150):
        body: dict[str, Any] = dict(base)
        for _ in range(rng.randint(1, 4)):
            key = rng.choice(keys)
            if rng.random() < 0.2:
                body.pop(key, None)
            else:
                body[key] = rng.choice([*WEIRD_VALUES, rng.randint(-5, 100_000), "tcp", "regex", "basic"])
        response = await client.post("/api/checks/", json=body, headers=member.headers)
        await _assert_client_error(response)
        if response.status_code == 201:
            check_id = response.json()["id"]
            patch = {rng.choice(keys): rng.choice(WEIRD_VALUES)}
            await _assert_client_error(
                await client.patch(f"/api/checks/{check_id}", json=patch, headers=member.headers)
            )
