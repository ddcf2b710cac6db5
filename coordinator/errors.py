"""Every error body is `{"status_code", "detail", "errors"?}` (CONTRACT §6).

Services raise `ApiError` subclasses; Litestar's own exceptions are translated here too, so that
a client never sees a 500 for anything it sent. Validation answers 422 with the fields at fault,
where Litestar alone would say 400.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_422_UNPROCESSABLE_ENTITY, HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

log = logging.getLogger(__name__)


class FieldError(msgspec.Struct):
    field: str
    message: str


class ApiError(Exception):
    status_code = 400

    def __init__(
        self,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers


class BadRequest(ApiError):
    status_code = 400


class Unauthorized(ApiError):
    status_code = 401


class Forbidden(ApiError):
    status_code = 403


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class PayloadTooLarge(ApiError):
    status_code = 413


class Unprocessable(ApiError):
    status_code = 422

    @classmethod
    def for_fields(cls, errors: list[FieldError]) -> Unprocessable:
        names = ", ".join(dict.fromkeys(e.field for e in errors))
        return cls(f"invalid fields: {names}", errors=errors)


class TooManyRequests(ApiError):
    status_code = 429

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class ErrorBody(msgspec.Struct, omit_defaults=True):
    status_code: int
    detail: str
    errors: list[FieldError] | None = None


def error_response(
    status_code: int,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[ErrorBody]:
    return Response(
        ErrorBody(status_code=status_code, detail=detail, errors=errors),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def handle_api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[ErrorBody]:
    return error_response(exc.status_code, exc.detail, exc.errors, exc.headers)


# msgspec says "Expected `int`, got `str` - at `$.interval`"; Litestar keeps the part before " - ".
_AT_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_NAMED_FIELD = re.compile(r"(?P<what>unknown|missing required) field `(?P<name>[^`]*)`")


def _field_errors(extra: Any) -> list[FieldError]:
    found: list[FieldError] = []
    for item in extra if isinstance(extra, list) else []:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid value"))
        field = str(item.get("key", "") or "")
        match = _AT_PATH.search(message)
        if match:
            field = match["path"] or field
            message = message[: match.start()]
        named = _NAMED_FIELD.search(message)
        if named:
            prefix = "" if field in ("data", "body", "") else f"{field}."
            field = prefix + named["name"]
            message = "unknown field" if named["what"] == "unknown" else "required"
        found.append(FieldError(field=field or "body", message=message))
    return found


def handle_validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorBody]:
    errors = _field_errors(exc.extra)
    if not errors:
        # Malformed JSON and the like: nothing a field can be blamed for.
        return error_response(400, _plain_detail(exc.detail))
    names = ", ".join(dict.fromkeys(e.field for e in errors))
    return error_response(HTTP_422_UNPROCESSABLE_ENTITY, f"invalid fields: {names}", errors)


def _plain_detail(detail: str) -> str:
    return detail or "bad request"


def handle_http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    if exc.status_code >= HTTP_500_INTERNAL_SERVER_ERROR:
        log.error("server error: %s", exc.detail)
        return error_response(exc.status_code, "internal server error")
    return error_response(exc.status_code, _plain_detail(exc.detail), headers=exc.headers)


def handle_too_deep(_: Request[Any, Any, Any], exc: RecursionError) -> Response[ErrorBody]:
    return error_response(400, "the JSON document is nested too deeply")


async def refuse_nul_characters(request: Request[Any, Any, Any]) -> Response[ErrorBody] | None:
    """PostgreSQL cannot store a NUL character in text; no field of this API has a use for one."""
    if "\x00" in request.url.query or "%00" in request.url.query:
        return error_response(400, "the query string may not contain NUL characters")
    # Ping bodies are job output, kept as bytes: they are the one place a NUL may pass.
    if request.method in ("POST", "PUT", "PATCH") and not request.url.path.startswith("/api/ping/"):
        body = await request.body()
        if b"\\u0000" in body or b"\x00" in body or b"%00" in body:
            return error_response(400, "the request body may not contain NUL characters (\\u0000)")
    return None


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "internal server error")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ApiError: handle_api_error,
    ValidationException: handle_validation,
    HTTPException: handle_http,
    RecursionError: handle_too_deep,
    Exception: handle_unexpected,
}
