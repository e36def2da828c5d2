"""How failures become HTTP answers.

Every error status is answered with one body shape: RFC 9457 problem details
(`application/problem+json`), built by `problem()` and documented for each
operation by `problem_responses()`. https://www.rfc-editor.org/rfc/rfc9457

Database failures a client can retry are answered with 503 (or 504) instead of
500. Only failures of the database itself are mapped; anything else a statement
raises (a constraint violation, bad SQL) is a bug and stays a 500 with its
traceback in the log. Invalid requests get 422 (400 for a body that is not
JSON) without their input echoed back.
"""

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.constants import REF_PREFIX
from fastapi.responses import JSONResponse, Response
from fastapi.utils import is_body_allowed_for_status_code
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from .db.failures import (
    DatabaseMisconfigured,
    DatabaseUnavailable,
    describe_error,
    sqlstate_of,
)

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    """An error answer. `type` is always "about:blank": the status and its
    `title` (the HTTP reason phrase) say what went wrong, `detail` says more."""

    type: str
    title: str
    status: int
    detail: str


class FieldError(BaseModel):
    """One invalid part of a request: where (`loc`, e.g. ["body", "name"]),
    what is wrong (`msg`) and pydantic's error type. Never the input itself."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(Problem):
    """The 422 answer: the problem, and every invalid part of the request."""

    errors: list[FieldError]


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem(
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
    errors: list[FieldError] | None = None,
) -> Response:
    """The one builder of error answers, so every status has the same body."""
    if not is_body_allowed_for_status_code(status):
        return Response(status_code=status, headers=headers)
    fields: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    body = (
        Problem(**fields)
        if errors is None
        else ValidationProblem(**fields, errors=errors)
    )
    return ProblemResponse(body.model_dump(mode="json"), status, headers)


# Seconds a client should wait before retrying a 503 (while the database refuses
# the service's settings, it grows: see db.MAX_RETRY_AFTER).
RETRY_AFTER_SECONDS = 1

# SQLSTATE classes meaning "the database cannot serve you now", not "this request
# is wrong": connection exceptions (08), insufficient resources (53: out of
# memory or disk), operator intervention (57P: shutdown, restart) and system
# errors (58). Failures to connect at all are sorted where they happen (db/failures.py).
# https://www.postgresql.org/docs/current/errcodes-appendix.html
UNAVAILABLE_SQLSTATES = ("08", "53", "57P", "58")
# Serialization failure and deadlock: the server rolled the transaction back
# because of a concurrent one; the same request, sent again, can succeed. (Not
# retried here: a handler can have done things no rollback undoes.)
RETRYABLE_SQLSTATES = ("40001", "40P01")
# The server cancelled the statement: it ran past DB_STATEMENT_TIMEOUT (or an
# operator cancelled it).
QUERY_CANCELED = "57014"


def _unavailable(detail: str, retry_after: int = RETRY_AFTER_SECONDS) -> Response:
    return problem(503, detail, headers={"Retry-After": str(retry_after)})


async def pool_exhausted(request: Request, error: Exception) -> Response:
    # Every connection stayed busy for pool_timeout seconds.
    logger.warning("database pool exhausted: %s %s", request.method, request.url.path)
    return _unavailable("The database is busy; retry shortly.")


async def database_unavailable(request: Request, error: Exception) -> Response:
    logger.warning(
        "database unavailable (%s): %s %s",
        describe_error(error),
        request.method,
        request.url.path,
    )
    return _unavailable("The database is unavailable; retry shortly.")


async def database_unreachable(request: Request, error: Exception) -> Response:
    """No connection could be opened (db.DatabaseUnavailable): an outage, or
    settings the database refuses, which no retry fixes until someone acts."""
    if not isinstance(error, DatabaseMisconfigured):
        return await database_unavailable(request, error)
    logger.error(
        "database refuses the service's settings (%s): %s %s",
        error.reason,
        request.method,
        request.url.path,
    )
    return _unavailable("The database is unavailable; retry later.", error.retry_after)


async def database_error(request: Request, error: Exception) -> Response:
    """Sort what the driver raised: timeout, conflict, outage, or a bug."""
    if not isinstance(error, DBAPIError):
        raise error
    sqlstate = sqlstate_of(error)
    if sqlstate in RETRYABLE_SQLSTATES:
        logger.warning(
            "database transaction conflict (%s): %s %s",
            describe_error(error),
            request.method,
            request.url.path,
        )
        return _unavailable("A concurrent request conflicted; retry shortly.")
    if sqlstate == QUERY_CANCELED:
        # Not retried blindly: the same statement would likely time out again.
        logger.warning(
            "database statement timed out: %s %s", request.method, request.url.path
        )
        return problem(504, "The database did not answer in time.")
    # connection_invalidated: the connection died under the statement (server
    # restart, pg_terminate_backend, idle-in-transaction timeout); SQLAlchemy has
    # already discarded it, and the pool replaces it on the next checkout.
    if (
        error.connection_invalidated
        or isinstance(error, OperationalError)
        or sqlstate.startswith(UNAVAILABLE_SQLSTATES)
    ):
        return await database_unavailable(request, error)
    # Integrity and programming errors, misuse of a connection: a 500.
    raise error


async def invalid_request(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    invalid = error.errors()
    # FastAPI reports a body that does not parse as a validation error of this type.
    if any(entry["type"] == "json_invalid" for entry in invalid):
        return problem(400, "The request body is not valid JSON.")
    # Only where, what and which kind: FastAPI's default answer echoes each
    # invalid input back, which can be large, and text JSON cannot encode (a
    # lone surrogate) would turn the 422 into a 500.
    errors = [
        FieldError(loc=list(entry["loc"]), msg=entry["msg"], type=entry["type"])
        for entry in invalid
    ]
    return problem(422, "The request is invalid; see errors.", errors=errors)


def allowed_methods(request: Request) -> str | None:
    """The methods the OpenAPI document lists for this path, or None for a path
    it does not list. Each operation is a route of its own, and Starlette's 405
    names only the methods of the first route matching the path."""
    path = request.scope["path"].removeprefix(request.scope.get("root_path", ""))
    methods = {
        method.upper()
        for template, operations in request.app.openapi()["paths"].items()
        if compile_path(template)[0].match(path)
        for method in operations
    }
    return ", ".join(sorted(methods)) if methods else None


async def http_error(request: Request, error: Exception) -> Response:
    """HTTPException, raised by our routes (404, 409, 415), by FastAPI (400 for
    a body it cannot decode) and by Starlette (404 and 405 for unknown paths and
    methods, 413 from the body limit)."""
    assert isinstance(error, HTTPException)
    headers = dict(error.headers or {})
    if error.status_code == 405:
        headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
    detail = error.detail if isinstance(error.detail, str) else ""
    return problem(
        error.status_code, detail or HTTPStatus(error.status_code).phrase, headers
    )


# What each documented error status means, for the OpenAPI document.
PROBLEM_DESCRIPTIONS = {
    400: "The request body is not valid JSON.",
    404: "Nothing exists at this path (no item has this id).",
    409: "The request conflicts with a stored item (the name is taken).",
    413: "The request body is larger than HTTP_MAX_BODY_BYTES.",
    415: "The request body is not JSON; send Content-Type: application/json.",
    422: "The request is invalid; `errors` names each invalid part.",
    503: "The database is unavailable or busy; retry after `Retry-After` seconds.",
    504: "The database did not answer in time.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers an operation can give, for FastAPI's `responses=`.

    FastAPI lists a response model under the route's media type
    (application/json); the same schema is listed under application/problem+json,
    the type every error is sent with.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        model = ValidationProblem if status == 422 else Problem
        response: dict[str, Any] = {
            "model": model,
            "description": PROBLEM_DESCRIPTIONS[status],
            "content": {
                PROBLEM_MEDIA_TYPE: {"schema": {"$ref": REF_PREFIX + model.__name__}}
            },
        }
        if status == 503:
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        responses[status] = response
    return responses


async def internal_error(request: Request, error: Exception) -> Response:
    # A bug. Starlette re-raises it after this answer, so the server logs its
    # traceback; the client learns nothing of it (messages can hold secrets).
    return problem(500, "The server failed; the error is in its log.")


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(PoolTimeoutError, pool_exhausted)
    # Every driver error is a DBAPIError (OperationalError, InterfaceError,
    # IntegrityError... are subclasses); database_error decides which are 503.
    app.add_exception_handler(DBAPIError, database_error)
    # No connection could be opened. (Only these: a TimeoutError or any other
    # OSError raised elsewhere is a bug, a 500 with its traceback in the log.)
    app.add_exception_handler(DatabaseUnavailable, database_unreachable)
