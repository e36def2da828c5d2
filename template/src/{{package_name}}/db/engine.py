"""The engine and its connection pool, configured from the settings, and the
start-up checks: the probe that says in one log line whether the database
answers and, behind PgBouncer, whether the role's timeouts are the ones asked for."""

import asyncio
import logging
import time
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, AdaptedConnection
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, PoolProxiedConnection

from ..settings import (
    Settings,
)
from .connection import (
    TIMEOUTS,
    connect_arguments,
    database_url,
    milliseconds,
    ssl_mode,
)
from .failures import (
    Connector,
    DatabaseMisconfigured,
    DatabaseUnavailable,
    describe_error,
)
from .pool import FairQueuePool

# Seconds a pooled connection may sit unused before pre-ping asks the server
# whether it is still there (see PrePing).
PING_IDLE_AFTER = 1.0
# Where PrePing notes when a connection was last returned to the pool.
LAST_USED = "last_used"
# The server's values of the timeouts sent at login (connection.TIMEOUTS), in
# milliseconds as PostgreSQL stores them.
SERVER_TIMEOUTS = text(
    "SELECT name, setting FROM pg_settings WHERE name IN "
    "('statement_timeout', 'idle_in_transaction_session_timeout')"
)

logger = logging.getLogger(__name__)


def create_engine(
    settings: Settings,
    *,
    pooled: bool = True,
    ping_idle_after: float = PING_IDLE_AFTER,
) -> AsyncEngine:
    """The engine and its connection pool, configured from the settings.

    Unpooled (each connection closed after use) for one-off work such as
    migrations, which must connect exactly as the service does. With pre-ping
    on, a connection idle for `ping_idle_after` seconds or more is pinged
    before use (see PrePing).
    """
    pool: dict[str, Any] = {"poolclass": NullPool}
    if pooled:
        pool = {
            "poolclass": FairQueuePool,
            "pool_size": settings.pool_size,
            "max_overflow": settings.max_overflow,
            "pool_timeout": settings.pool_timeout,
            "pool_recycle": settings.pool_recycle,
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
    if pooled and settings.pool_pre_ping:
        pre_ping = PrePing(settings.connect_timeout, ping_idle_after)
        event.listen(engine.sync_engine, "checkin", pre_ping.checkin)
        event.listen(engine.sync_engine, "checkout", pre_ping.checkout)
    return engine


class PrePing:
    """DB_POOL_PRE_PING: a pooled connection is checked before a request gets it,
    and a dead one is replaced (SQLAlchemy retries the checkout with a new
    connection) instead of failing the request.

    - A connection the server closed (a restart, pg_terminate_backend, an idle
      timeout) costs nothing to spot: asyncpg has already seen its socket close.
    - A connection idle for `idle_after` seconds or more (PING_IDLE_AFTER unless
      told otherwise) also gets one round trip, `SELECT 1` over the simple query
      protocol (no transaction, no prepared statement, so safe behind
      PgBouncer), bounded by connect_timeout: that catches a server that
      vanished without closing anything. Under steady
      traffic connections are reused within milliseconds, so requests pay no
      round trip. (SQLAlchemy's own pool_pre_ping takes three for asyncpg, on
      every checkout: BEGIN, the ping, ROLLBACK.)
    - A server shutting down sends each session an error before it closes the
      socket; a connection checked out between the two looks open but fails its
      first statement. Only a round trip catches that, so `idle_after=0` pings
      every checkout (the read replica's pool does, see db/replicas.py).
    https://docs.sqlalchemy.org/en/20/core/pooling.html#disconnect-handling-pessimistic
    """

    def __init__(self, timeout: float, idle_after: float = PING_IDLE_AFTER) -> None:
        self.timeout = timeout
        self.idle_after = idle_after

    def checkin(self, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[LAST_USED] = time.monotonic()

    def checkout(
        self,
        dbapi_connection: AdaptedConnection,
        record: ConnectionPoolEntry,
        proxy: PoolProxiedConnection,
    ) -> None:
        if record.driver_connection is None or record.driver_connection.is_closed():
            raise DisconnectionError("the server closed the connection")
        last_used = record.info.get(LAST_USED)
        if last_used is None or time.monotonic() - last_used < self.idle_after:
            return  # new, or just used
        try:
            dbapi_connection.run_async(
                lambda connection: connection.execute("SELECT 1", timeout=self.timeout)
            )
        except Exception as error:
            raise DisconnectionError(
                f"the ping failed: {type(error).__name__}"
            ) from error


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


async def round_trip_error_within(
    engine: AsyncEngine, within: float
) -> BaseException | None:
    """round_trip_error, or a TimeoutError when the round trip (waiting for a
    pooled connection included) takes more than `within` seconds."""
    try:
        async with asyncio.timeout(within):
            return await round_trip_error(engine)
    except TimeoutError as timed_out:
        return timed_out


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


async def check_role_timeouts(engine: AsyncEngine, settings: Settings) -> bool:
    """Behind PgBouncer (DB_PGBOUNCER), whether the server's timeouts are the
    ones DB_STATEMENT_TIMEOUT and DB_IDLE_IN_TRANSACTION_TIMEOUT ask for.

    PgBouncer refuses timeouts sent at login, so there the server's own values
    apply: set them once on the service's role (ALTER ROLE ... SET), which costs
    nothing per request; a SET LOCAL in every transaction would cost one more
    round trip each (0.1 ms through a PgBouncer on the same machine, a network
    round trip in production). One WARNING per timeout that differs, with the
    statement that fixes it. Never raises: the service starts either way.
    """
    if not settings.pgbouncer:
        return True  # sent at login (connection.server_settings)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(SERVER_TIMEOUTS)
            server: dict[str, str] = dict(rows.all())
    except (SQLAlchemyError, DatabaseUnavailable) as error:
        logger.warning("timeouts not checked (%s)", describe_error(error))
        return False
    agree = True
    for name, field, variable in TIMEOUTS:
        wanted = milliseconds(getattr(settings, field))
        if server[name] != wanted:
            agree = False
            logger.warning(
                "%s asks for %s ms, but behind PgBouncer (DB_PGBOUNCER) the server's "
                "%s applies, which is %s ms%s: set it on the service's role, once: "
                "ALTER ROLE <user> SET %s = %s",
                variable,
                wanted,
                name,
                server[name],
                " (off)" if server[name] == "0" else "",
                name,
                wanted,
            )
    return agree
