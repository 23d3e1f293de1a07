"""Errors as RFC 9457 problem documents (``application/problem+json``)."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

PROBLEM = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
}


class Refused(HTTPException):
    """The owner of the aggregate refused the command: 422 with its reason."""

    status_code = 422


class Unavailable(HTTPException):
    status_code = 503


def problem(status: int, detail: str, **extra: Any) -> Response[dict[str, Any]]:
    body = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }
    headers = {"WWW-Authenticate": 'Bearer realm="backoffice"'} if status == 401 else None
    return Response(body, status_code=status, media_type=PROBLEM, headers=headers)


def http_problem(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationException) and exc.extra:
        extra["errors"] = exc.extra
    return problem(exc.status_code, str(exc.detail), **extra)


def unexpected_problem(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    structlog.get_logger().exception("unexpected error", path=request.url.path)
    return problem(HTTP_500_INTERNAL_SERVER_ERROR, "an unexpected error; it has been logged")
