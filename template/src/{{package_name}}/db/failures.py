"""What a database failure means: a connection that could not be opened is
DatabaseUnavailable (503, retry) or DatabaseMisconfigured (503, logged at ERROR,
the service's own settings are refused), sorted by Connector where the
connection opens. And how errors are described in logs, without secrets."""

import ssl
from typing import Any

# asyncpg ships no type hints (the ignore stays harmless once it does).
import asyncpg.exceptions  # type: ignore[import-untyped, unused-ignore]
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry

from ..settings import (
    NAME_VAR,
    PASSWORD_VAR,
    URL_VAR,
    USER_VAR,
)

DIALECT_PARAMETERS = ("host", "port", "prepared_statement_cache_size")
# SQLSTATE classes a server refuses a new connection with when it cannot serve
# one now: connection exceptions (08), insufficient resources (53: too many
# connections), operator intervention (57: starting up, shutting down) and
# system errors (58). Any other refusal is about the service's own settings.
# https://www.postgresql.org/docs/current/errcodes-appendix.html
TRANSIENT_SQLSTATES = ("08", "53", "57", "58")
# Retry-After, in seconds, while the database refuses the service's settings:
# doubles with each consecutive refusal up to this, and starts over at 1 once a
# connection opens. A wrong password is not fixed in a second; clients polling
# every second would only add load and log lines.
MAX_RETRY_AFTER = 60


class DatabaseUnavailable(Exception):
    """No connection could be opened: the database is down, unreachable, starting
    up or full. Answered 503; a retry after `retry_after` seconds may succeed."""

    def __init__(self, reason: str, message: str = "", retry_after: int = 1) -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        # For logs: the driver's exception class and SQLSTATE, and what to check;
        # never the server's message (it can name the user or the host).
        self.reason = reason
        self.retry_after = retry_after


class DatabaseMisconfigured(DatabaseUnavailable):
    """The database refuses the service's own settings: the login (SQLSTATE class
    28), a database that does not exist (3D000), a setting it rejects, or a TLS
    certificate that does not verify. Still answered 503, since the fix (a
    password, a grant) can land while the service runs, but logged at ERROR, and
    `retry_after` grows while it lasts."""


class Connector:
    """Opens each new connection (SQLAlchemy's do_connect hook) and, when one
    cannot be opened, says why with one of our two exceptions, so that only
    failures to reach the database are answered 503."""

    def __init__(self) -> None:
        self.consecutive_refusals = 0

    def __call__(
        self,
        dialect: Dialect,
        record: ConnectionPoolEntry,
        cargs: list[Any],
        cparams: dict[str, Any],
    ) -> Any:
        try:
            connection = dialect.connect(*cargs, **cparams)
        except Exception as error:
            failure = self.failure(dialect, error)
            if failure is None:
                raise
            raise failure from error
        self.consecutive_refusals = 0
        return connection

    def failure(self, dialect: Dialect, error: Exception) -> DatabaseUnavailable | None:
        """What `error`, raised while connecting, means; None for a bug."""
        # The driver's own exception, under SQLAlchemy's DBAPI adaptation of it.
        adapted = isinstance(error, dialect.loaded_dbapi.Error)
        cause = error.__cause__ if adapted and error.__cause__ else error
        name = type(cause).__name__
        if isinstance(cause, ssl.SSLCertVerificationError):
            return self.refused(
                f"{name}: the server's TLS certificate did not verify "
                f"({cause.verify_message}); check DB_SSL_MODE and DB_SSL_ROOT_CERT",
                str(cause),
            )
        # Refused, timed out, host not found, reset: not reached.
        no_target = asyncpg.exceptions.TargetServerAttributeNotMatched
        if isinstance(cause, OSError | no_target):
            return DatabaseUnavailable(name, str(cause))
        if isinstance(cause, asyncpg.exceptions.PostgresError):
            sqlstate: str = cause.sqlstate
            reason = f"{name}, SQLSTATE {sqlstate}"
            if sqlstate.startswith(TRANSIENT_SQLSTATES):
                return DatabaseUnavailable(reason, str(cause))
            if sqlstate.startswith("28"):
                hint = f"the login was refused; check {USER_VAR} and {PASSWORD_VAR}"
            elif sqlstate == "3D000":
                hint = f"the database does not exist; check {NAME_VAR}"
            else:
                hint = "a connection setting was refused; check the DB_* variables"
            return self.refused(f"{reason}: {hint} (or {URL_VAR})", str(cause))
        if isinstance(cause, asyncpg.exceptions.ClientConfigurationError):
            return self.refused(f"{name}: check {URL_VAR}", str(cause))
        return None

    def refused(self, reason: str, message: str) -> DatabaseMisconfigured:
        self.consecutive_refusals += 1
        backoff = 2 ** min(self.consecutive_refusals - 1, 6)
        return DatabaseMisconfigured(reason, message, min(backoff, MAX_RETRY_AFTER))


def describe_error(error: BaseException) -> str:
    """What failed, for logs: the driver's exception class and SQLSTATE, never the
    message (it can echo connection details or statement parameters)."""
    if isinstance(error, DatabaseUnavailable):
        return error.reason
    if not isinstance(error, DBAPIError) or error.orig is None:
        return type(error).__name__
    driver_error = error.orig.__cause__ or error.orig
    sqlstate = sqlstate_of(error)
    name = type(driver_error).__name__
    return f"{name}, SQLSTATE {sqlstate}" if sqlstate else name


def sqlstate_of(error: DBAPIError) -> str:
    """The SQLSTATE the server answered with, or "" when it did not answer."""
    return getattr(error.orig, "sqlstate", None) or ""
