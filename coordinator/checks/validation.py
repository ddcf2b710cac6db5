"""From a request body to complete check fields, and the rules that span several fields.

Single-field limits (ranges, lengths, enums) are declared on `CheckInput` and enforced while
decoding; what needs more than one field, or a parser, is checked here. Every broken rule is
reported at once, each naming its field.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

import msgspec
from msgspec import UNSET

from coordinator.checks.schemas import WRITE_ONLY, CheckFields, CheckInput
from coordinator.errors import FieldError, Unprocessable
from shared.wire import CheckType, parse_source

DEFAULT_TIMEOUT = 10
DEFAULT_HEARTBEAT_GRACE = 300

_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")
_SETTABLE = tuple(f for f in CheckFields.__struct_fields__)


def given(data: CheckInput) -> dict[str, Any]:
    """The fields the client actually sent, with the deprecated single agent id folded in."""
    sent = {name: getattr(data, name) for name in _SETTABLE if getattr(data, name) is not UNSET}
    if data.assigned_agent_id is not UNSET and "assigned_agent_ids" not in sent:
        sent["assigned_agent_ids"] = [] if data.assigned_agent_id is None else [data.assigned_agent_id]
    return sent


def for_write(data: CheckInput, existing: CheckFields | None) -> CheckFields:
    """Fields for POST (no existing) or PUT: what is not sent takes its default.

    Write-only secrets are the exception on PUT: a client cannot read them back, so leaving one
    out keeps it; sending null clears it.
    """
    sent = given(data)
    missing = [f for f in ("name", "type") if f not in sent]
    if missing:
        raise Unprocessable.for_fields([FieldError(field=f, message="required") for f in missing])
    if existing is not None:
        for secret in WRITE_ONLY:
            sent.setdefault(secret, getattr(existing, secret))
    if "timeout" not in sent:
        sent["timeout"] = min(DEFAULT_TIMEOUT, int(sent.get("interval", 60)) - 1)
    if "grace_period" not in sent and sent["type"] == CheckType.HEARTBEAT:
        sent["grace_period"] = DEFAULT_HEARTBEAT_GRACE
    return checked(CheckFields(**sent))


def for_patch(data: CheckInput, existing: CheckFields) -> CheckFields:
    merged = msgspec.structs.replace(existing, **given(data))
    return checked(merged)


def checked(fields: CheckFields) -> CheckFields:
    errors = list(_rule_errors(fields))
    if errors:
        raise Unprocessable.for_fields(errors)
    fields.assigned_agent_ids = list(dict.fromkeys(fields.assigned_agent_ids))
    if fields.type == CheckType.UPTIME and fields.http_method:
        fields.http_method = fields.http_method.upper()  # type: ignore[assignment]
    return fields


def _rule_errors(f: CheckFields) -> list[FieldError]:
    errors: list[FieldError] = []

    def bad(field: str, message: str) -> None:
        errors.append(FieldError(field=field, message=message))

    if f.type == CheckType.UPTIME:
        problem = _url_problem(f.url)
        if problem:
            bad("url", problem)
    if f.type in (CheckType.TCP, CheckType.UDP, CheckType.ICMP, CheckType.DNS):
        if not f.host:
            bad("host", f"required for a {f.type.value} check")
        elif not _is_host(f.host):
            bad("host", "not a hostname or IP address")
    if f.type in (CheckType.TCP, CheckType.UDP) and f.port is None:
        bad("port", f"required for a {f.type.value} check")
    if f.type == CheckType.UDP and not f.send_text:
        bad("send_text", "required for a udp check: UDP has no connection to test, only a reply")
    if f.timeout >= f.interval:
        bad("timeout", f"must be below the interval ({f.interval} s)")
    if f.content_match_enabled and not f.content_match_text:
        bad("content_match_text", "required when content_match_enabled is true")
    if f.content_match_type == "regex" and f.content_match_text:
        try:
            re.compile(f.content_match_text)
        except re.error as exc:
            bad("content_match_text", f"not a valid regular expression: {exc}")
    if f.auth_method == "basic" and not f.auth_username:
        bad("auth_username", "required when auth_method is basic")
    if f.auth_method == "bearer" and not f.auth_bearer_token:
        bad("auth_bearer_token", "required when auth_method is bearer")
    if f.dns_server and not _is_server_address(f.dns_server):
        bad("dns_server", "expected an IP address, optionally with :port")
    for key in f.check_source_critical:
        source = parse_source(key)
        if source is None or source.kind == "central":
            bad(f"check_source_critical.{key}", "keys must look like agent:<id> or geo:<location_id>")
    return errors


def _url_problem(url: str | None) -> str | None:
    if not url:
        return "required for an uptime check"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number or out of range
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname or not _is_host(parts.hostname):
        return "has no valid host"
    del port
    if any(ch.isspace() for ch in url):
        return "may not contain white space"
    return None


def _is_host(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return bool(_HOSTNAME.match(value))
    return True


def _is_server_address(value: str) -> bool:
    host, port = value, None
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":") or None
    elif value.count(":") == 1:
        host, port = value.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return port is None or (port.isdigit() and 1 <= int(port) <= 65535)
