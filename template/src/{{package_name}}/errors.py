"""Database failures a client can retry, answered with 503 instead of 500."""

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

logger = logging.getLogger(__name__)

# Seconds a client should wait before retrying a 503.
RETRY_AFTER_SECONDS = 1


def _unavailable(detail: str) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"detail": detail},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def pool_exhausted(request: Request, error: Exception) -> JSONResponse:
    # Every connection stayed busy for pool_timeout seconds.
    logger.warning("database pool exhausted: %s %s", request.method, request.url.path)
    return _unavailable("The database is busy; retry shortly.")


async def database_unavailable(request: Request, error: Exception) -> JSONResponse:
    # Log the exception type only: driver messages can echo connection details.
    logger.warning(
        "database unavailable (%s): %s %s",
        type(error).__name__,
        request.method,
        request.url.path,
    )
    return _unavailable("The database is unavailable; retry shortly.")


def add_database_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PoolTimeoutError, pool_exhausted)
    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(InterfaceError, database_unavailable)
    # Connection refused or timed out before a database session existed.
    app.add_exception_handler(OSError, database_unavailable)
