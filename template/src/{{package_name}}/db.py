"""The database layer: URL, engine, session factory and the request-scoped session."""

import logging
import math
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from .errors import describe_error
from .settings import Settings, SslMode

DRIVER = "postgresql+asyncpg"
# libpq options that asyncpg would reject as unknown keyword arguments; they are
# taken out of the URL and translated by connect_arguments().
LIBPQ_TLS_OPTIONS = ("sslmode", "sslrootcert")

logger = logging.getLogger(__name__)


def database_url(settings: Settings) -> URL:
    """The URL the engine connects to, with the password inside it.

    Built with URL.create, never by string formatting, so any character in a
    password works. Render it only with `hide_password=True` (the default of str()).
    """
    if settings.database_url is not None:
        url = make_url(settings.database_url.get_secret_value())
        return url.set(drivername=DRIVER).difference_update_query(LIBPQ_TLS_OPTIONS)
    password = settings.db_password.get_secret_value() if settings.db_password else None
    return URL.create(
        DRIVER,
        username=settings.db_user,
        password=password,
        host=settings.db_host,
        port=settings.db_port,
        database=settings.db_name,
    )


def ssl_argument(mode: SslMode, root_cert: Path | None) -> ssl.SSLContext | str | bool:
    """libpq's sslmode as asyncpg's `ssl` argument, built once per engine."""
    if mode == "disable":
        return False
    if mode == "prefer":
        return "prefer"  # asyncpg's own: TLS when the server offers it.
    # The system's CAs unless a root certificate is given.
    context = ssl.create_default_context(cafile=root_cert)
    if mode == "require":
        # Encrypt, but trust any certificate: libpq's meaning of "require".
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif mode == "verify-ca":
        context.check_hostname = False
    return context


def milliseconds(seconds: float) -> str:
    """A timeout as PostgreSQL reads it; rounded up, so only 0 turns it off."""
    return str(math.ceil(seconds * 1000))


def _url_query(settings: Settings) -> Mapping[str, str | tuple[str, ...]]:
    if settings.database_url is None:
        return {}
    return make_url(settings.database_url.get_secret_value()).query


def ssl_mode(settings: Settings) -> SslMode:
    """The TLS mode in force: DB_SSL_MODE, else the URL's sslmode, else prefer."""
    url_mode = _url_query(settings).get("sslmode")
    if settings.ssl_mode is None and isinstance(url_mode, str):
        return url_mode  # type: ignore[return-value]  # checked by Settings
    return settings.ssl_mode or "prefer"


def connect_arguments(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for asyncpg.connect(), computed once per engine."""
    root_cert: Path | None = settings.ssl_root_cert
    url_root_cert = _url_query(settings).get("sslrootcert")
    if root_cert is None and isinstance(url_root_cert, str):
        root_cert = Path(url_root_cert)
    return {
        "timeout": settings.connect_timeout,
        "ssl": ssl_argument(ssl_mode(settings), root_cert),
        # Sent once when each connection opens, not per request. (Behind
        # PgBouncer, list these in its ignore_startup_parameters or set them on
        # the role with ALTER ROLE ... SET instead.)
        "server_settings": {
            "application_name": settings.application_name,
            "statement_timeout": milliseconds(settings.statement_timeout),
            "idle_in_transaction_session_timeout": milliseconds(
                settings.idle_in_transaction_timeout
            ),
        },
    }


def create_engine(settings: Settings) -> AsyncEngine:
    """The engine and its connection pool, configured from the settings."""
    return create_async_engine(
        database_url(settings),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=settings.pool_recycle,
        pool_pre_ping=settings.pool_pre_ping,
        echo=settings.echo_sql,
        # Statement parameters can hold personal data or secrets: keep them out of
        # logs and exception messages outside development.
        hide_parameters=not settings.dev_mode,
        connect_args=connect_arguments(settings),
    )


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


async def round_trip_error(engine: AsyncEngine) -> SQLAlchemyError | OSError | None:
    """Run one `SELECT 1` through the pool: the error, or None if it answered."""
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as error:
        return error
    return None


async def probe_database(engine: AsyncEngine) -> bool:
    """Try one connection at start-up and log the outcome in one line.

    Never raises: with the database down the service still starts, answers 503
    (and /health 503) and recovers by itself once the database is reachable.
    """
    location = database_location(engine.url)
    error = await round_trip_error(engine)
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
