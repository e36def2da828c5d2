"""How failures become HTTP answers.

Database failures a client can retry are answered with 503 (or 504) instead of
500. Only failures of the database itself are mapped; anything else a statement
raises (a constraint violation, bad SQL) is a bug and stays a 500 with its
traceback in the log. Invalid requests get 422 without their input echoed back.
"""

import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

logger = logging.getLogger(__name__)

# Seconds a client should wait before retrying a 503.
RETRY_AFTER_SECONDS = 1

# SQLSTATE classes meaning "the database cannot serve you now", not "this request
# is wrong": connection exceptions (08), refused login (28: wrong password or
# role) and missing database (3D), insufficient resources (53: too many
# connections, out of memory or disk), operator intervention (57P: shutdown,
# restart, "cannot connect now") and system errors (58).
# https://www.postgresql.org/docs/current/errcodes-appendix.html
UNAVAILABLE_SQLSTATES = ("08", "28", "3D", "53", "57P", "58")
# The server cancelled the statement: it ran past DB_STATEMENT_TIMEOUT (or an
# operator cancelled it).
QUERY_CANCELED = "57014"


def _unavailable(detail: str) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"detail": detail},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _sqlstate(error: DBAPIError) -> str:
    return getattr(error.orig, "sqlstate", None) or ""


def describe_error(error: BaseException) -> str:
    """What failed, for logs: the driver's exception class and SQLSTATE, never the
    message (it can echo connection details or statement parameters)."""
    if not isinstance(error, DBAPIError) or error.orig is None:
        return type(error).__name__
    driver_error = error.orig.__cause__ or error.orig
    sqlstate = _sqlstate(error)
    name = type(driver_error).__name__
    return f"{name}, SQLSTATE {sqlstate}" if sqlstate else name


async def pool_exhausted(request: Request, error: Exception) -> JSONResponse:
    # Every connection stayed busy for pool_timeout seconds.
    logger.warning("database pool exhausted: %s %s", request.method, request.url.path)
    return _unavailable("The database is busy; retry shortly.")


async def database_unavailable(request: Request, error: Exception) -> JSONResponse:
    logger.warning(
        "database unavailable (%s): %s %s",
        describe_error(error),
        request.method,
        request.url.path,
    )
    return _unavailable("The database is unavailable; retry shortly.")


async def database_error(request: Request, error: Exception) -> JSONResponse:
    """Sort what the driver raised: timeout, outage, or a bug."""
    if not isinstance(error, DBAPIError):
        raise error
    sqlstate = _sqlstate(error)
    if sqlstate == QUERY_CANCELED:
        # Not retried blindly: the same statement would likely time out again.
        logger.warning(
            "database statement timed out: %s %s", request.method, request.url.path
        )
        return JSONResponse(
            status_code=504,
            content={"detail": "The database did not answer in time."},
        )
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


async def invalid_request(request: Request, error: Exception) -> JSONResponse:
    # FastAPI's default answer echoes each invalid input back: that can be large,
    # and text JSON cannot encode (a lone surrogate) would turn the 422 into a 500.
    assert isinstance(error, RequestValidationError)
    problems = [
        {key: value for key, value in problem.items() if key != "input"}
        for problem in error.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(problems)})


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(PoolTimeoutError, pool_exhausted)
    # Every driver error is a DBAPIError (OperationalError, InterfaceError,
    # IntegrityError... are subclasses); database_error decides which are 503.
    app.add_exception_handler(DBAPIError, database_error)
    # Connection refused or timed out before a database session existed.
    app.add_exception_handler(OSError, database_unavailable)
