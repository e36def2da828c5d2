"""The database layer: URL, engine, session factory and the request-scoped session.

The engine opens each connection with the settings translated for asyncpg
(connect_arguments: TLS, timeouts, the URL's libpq parameters), and says why one
could not be opened (Connector): DatabaseUnavailable, or DatabaseMisconfigured
when the database refuses the service's own settings.
"""

import logging
import math
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

# asyncpg ships no type hints (the ignore stays harmless once it does).
import asyncpg.exceptions  # type: ignore[import-untyped, unused-ignore]
from fastapi import Depends, Request
from pydantic import SecretStr
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

from .settings import (
    NAME_VAR,
    PASSWORD_VAR,
    URL_VAR,
    USER_VAR,
    Settings,
    SslMode,
)

DRIVER = "postgresql+asyncpg"
# URL parameters SQLAlchemy's asyncpg dialect reads itself. connect_arguments()
# translates every other one the settings accept, so those leave the URL.
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

logger = logging.getLogger(__name__)
Value = TypeVar("Value")


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


def database_url(settings: Settings) -> URL:
    """The URL the engine connects to, with the password inside it.

    Built with URL.create, never by string formatting, so any character in a
    password works. Render it only with `hide_password=True` (the default of str()).
    """
    if settings.database_url is not None:
        url = make_url(settings.database_url.get_secret_value())
        parameters = settings.url_parameters
        # libpq's dbname, user and password parameters are the URL's own parts.
        return url.set(
            drivername=DRIVER,
            username=parameters.user or url.username,
            password=_secret(parameters.password) or url.password,
            database=parameters.dbname or url.database,
            query={
                name: value
                for name, value in url.query.items()
                if name in DIALECT_PARAMETERS
            },
        )
    password = settings.db_password.get_secret_value() if settings.db_password else None
    return URL.create(
        DRIVER,
        username=settings.db_user,
        password=password,
        host=settings.db_host,
        port=settings.db_port,
        database=settings.db_name,
    )


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def ssl_argument(
    mode: SslMode,
    root_cert: Path | None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    key_password: str | None = None,
) -> ssl.SSLContext | str | bool:
    """libpq's sslmode as asyncpg's `ssl` argument, built once per engine."""
    if mode == "disable":
        return False
    if mode == "prefer":
        # asyncpg's own: TLS when the server offers it. (Settings refuse a client
        # certificate here: with a context of ours, TLS would be required.)
        return "prefer"
    # The system's CAs unless a root certificate is given.
    context = ssl.create_default_context(cafile=root_cert)
    if mode == "require":
        # Encrypt, but trust any certificate: libpq's meaning of "require".
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif mode == "verify-ca":
        context.check_hostname = False
    if client_cert is not None:
        # "" rather than None: with None, OpenSSL prompts on the terminal.
        context.load_cert_chain(client_cert, client_key, key_password or "")
    return context


def milliseconds(seconds: float) -> str:
    """A timeout as PostgreSQL reads it; rounded up, so only 0 turns it off."""
    return str(math.ceil(seconds * 1000))


def chosen(settings: Settings, field: str, from_url: Value | None) -> Value:
    """A DB_* variable when it is set, else the URL's parameter of the same
    meaning when it has one, else the variable's default."""
    if from_url is not None and field not in settings.model_fields_set:
        return from_url
    value: Value = getattr(settings, field)
    return value


def ssl_mode(settings: Settings) -> SslMode:
    """The TLS mode in force: DB_SSL_MODE, else the URL's sslmode, else prefer."""
    mode: SslMode | None = chosen(settings, "ssl_mode", settings.url_parameters.sslmode)
    return mode or "prefer"


def server_settings(settings: Settings) -> dict[str, str]:
    """Settings each session starts with: the URL's options, the timeouts and
    the application name."""
    url = settings.url_parameters
    options = url.options or {}
    values = dict(options)
    timeouts = (
        ("statement_timeout", "statement_timeout"),
        ("idle_in_transaction_session_timeout", "idle_in_transaction_timeout"),
    )
    for name, field in timeouts:
        if name not in options or field in settings.model_fields_set:
            values[name] = milliseconds(getattr(settings, field))
    values["application_name"] = chosen(
        settings,
        "application_name",
        url.application_name or url.fallback_application_name,
    )
    return values


def connect_arguments(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for asyncpg.connect(): the settings, and the URL's libpq
    parameters translated, computed once per engine."""
    url = settings.url_parameters
    arguments: dict[str, Any] = {
        "timeout": chosen(settings, "connect_timeout", url.connect_timeout),
        "ssl": ssl_argument(
            ssl_mode(settings),
            chosen(settings, "ssl_root_cert", url.sslrootcert),
            url.sslcert,
            url.sslkey,
            _secret(url.sslpassword),
        ),
        # Sent once when each connection opens, not per request. (Behind
        # PgBouncer, list these in its ignore_startup_parameters or set them on
        # the role with ALTER ROLE ... SET instead.)
        "server_settings": server_settings(settings),
    }
    optional = {
        "target_session_attrs": url.target_session_attrs,
        "krbsrvname": url.krbsrvname,
        "gsslib": url.gsslib,
    }
    arguments.update({name: v for name, v in optional.items() if v is not None})
    return arguments


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


def create_engine(settings: Settings, *, pooled: bool = True) -> AsyncEngine:
    """The engine and its connection pool, configured from the settings.

    Unpooled (each connection closed after use) for one-off work such as
    migrations, which must connect exactly as the service does.
    """
    pool: dict[str, Any] = {"poolclass": NullPool}
    if pooled:
        pool = {
            "pool_size": settings.pool_size,
            "max_overflow": settings.max_overflow,
            "pool_timeout": settings.pool_timeout,
            "pool_recycle": settings.pool_recycle,
            "pool_pre_ping": settings.pool_pre_ping,
        }
    engine = create_async_engine(
        database_url(settings),
        echo=settings.echo_sql,
        # Statement parameters can hold personal data or secrets: keep them out of
        # logs and exception messages outside development.
        hide_parameters=not settings.dev_mode,
        connect_args=connect_arguments(settings),
        **pool,
    )
    event.listen(engine.sync_engine, "do_connect", Connector())
    return engine


def database_location(url: URL) -> str:
    """Where the engine connects, for log lines: never the user or password."""
    host = url.host or url.query.get("host") or "localhost"
    return f"host={host} port={url.port or 5432} database={url.database}"


def describe_configuration(settings: Settings) -> str:
    """The start-up line: database target, pool and TLS; never user or password."""
    return (
        f"{database_location(database_url(settings))} "
        f"pool_size={settings.pool_size} max_overflow={settings.max_overflow} "
        f"pool_timeout={settings.pool_timeout}s pool_recycle={settings.pool_recycle}s "
        f"tls={ssl_mode(settings)}"
    )


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


async def round_trip_error(
    engine: AsyncEngine,
) -> SQLAlchemyError | DatabaseUnavailable | None:
    """Run one `SELECT 1` through the pool: the error, or None if it answered."""
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, DatabaseUnavailable) as error:
        return error
    return None


async def probe_database(engine: AsyncEngine) -> bool:
    """Try one connection at start-up and log the outcome in one line.

    Never raises: with the database down the service still starts, answers 503
    (and /health 503) and recovers by itself once the database is reachable.
    """
    location = database_location(engine.url)
    error = await round_trip_error(engine)
    if isinstance(error, DatabaseMisconfigured):
        logger.error(
            "database refuses the service's settings at start-up (%s): %s; "
            "answering 503 until they are fixed",
            error.reason,
            location,
        )
        return False
    if error is not None:
        logger.warning(
            "database unavailable at start-up (%s): %s; answering 503 until it is up",
            describe_error(error),
            location,
        )
        return False
    logger.info("database reachable: %s", location)
    return True


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after commit, without the
    # implicit I/O that async code cannot do when serialising a response.
    return async_sessionmaker(engine, expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: commits when the endpoint returns, rolls back
    when anything raises (HTTPException included)."""
    session_factory: async_sessionmaker[AsyncSession] = (
        request.app.state.session_factory
    )
    async with session_factory() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


# scope="function" runs the commit before the response is sent, so a failed
# commit becomes an error response instead of a success for a lost write.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
