"""The connection budget: whether this machine's pools fit in what the database
server has room for, checked once at start-up and logged in one line.

Each worker process has a pool of its own, so one machine may open up to
workers x (pool_size + max_overflow) connections. The server refuses ordinary
logins past max_connections less the slots it reserves (for superusers, and for
pg_use_reserved_connections on PostgreSQL 16+), and other clients already hold
some of those. A budget above that room works until a busy moment, then
connections are refused and requests answer 503.
"""

import logging
import os
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..settings import (
    Settings,
)
from .failures import (
    DatabaseUnavailable,
    describe_error,
)

# How many worker processes serve the app on this machine. uvicorn (and
# gunicorn) read it as their default worker count; server.py sets it from
# `--workers`, so every worker process sees the number.
WORKERS_VAR = "WEB_CONCURRENCY"

# The server's limits, and the client connections of everyone but this service
# (told apart by application_name, the one this connection uses). A role
# without pg_read_all_stats sees other roles' sessions with backend_type
# hidden: those count when they are in a database as a user, as client
# backends are (the server's own processes are not).
SERVER_ROOM = text(
    """
    SELECT
        current_setting('max_connections')::int,
        current_setting('superuser_reserved_connections')::int,
        current_setting('reserved_connections', true)::int,
        (
            SELECT count(*)
            FROM pg_stat_activity
            WHERE application_name IS DISTINCT FROM current_setting('application_name')
                AND coalesce(
                    backend_type = 'client backend',
                    datid IS NOT NULL AND usesysid IS NOT NULL
                )
        )::int
    """
)

logger = logging.getLogger(__name__)


def worker_count() -> int:
    """WORKERS_VAR, or 1 when it is unset or not a positive number."""
    try:
        return max(1, int(os.environ.get(WORKERS_VAR, "1")))
    except ValueError:
        return 1


@dataclass(frozen=True)
class ServerRoom:
    """What the server allows ordinary logins, and what others hold of it."""

    max_connections: int
    superuser_reserved_connections: int
    # None before PostgreSQL 16, which has no such setting.
    reserved_connections: int | None
    other_clients: int

    @property
    def free(self) -> int:
        reserved = self.superuser_reserved_connections + (
            self.reserved_connections or 0
        )
        return self.max_connections - reserved - self.other_clients

    def __str__(self) -> str:
        parts = [
            f"max_connections {self.max_connections}",
            f"superuser_reserved_connections {self.superuser_reserved_connections}",
        ]
        if self.reserved_connections is not None:
            parts.append(f"reserved_connections {self.reserved_connections}")
        parts.append(f"{self.other_clients} held by other clients")
        return " - ".join(parts)


async def server_room(engine: AsyncEngine) -> ServerRoom:
    async with engine.connect() as connection:
        row = (await connection.execute(SERVER_ROOM)).one()
    return ServerRoom(*row)


async def log_connection_budget(
    engine: AsyncEngine, settings: Settings, subject: str = "connection budget"
) -> None:
    """One INFO line when this machine's pools fit in the server's room, one
    WARNING naming the numbers and the variables to change when they do not.
    Never raises: the budget is advice, not a reason to refuse to start.
    `subject` starts each line (the read replica's pool has a line of its own)."""
    workers = worker_count()
    per_process = settings.pool_size + settings.max_overflow
    budget = (
        f"{WORKERS_VAR} {workers} x (DB_POOL_SIZE {settings.pool_size} + "
        f"DB_MAX_OVERFLOW {settings.max_overflow}) = {workers * per_process} "
        "connections from this machine's workers"
    )
    if settings.pgbouncer:
        # The pools connect to PgBouncer, which holds server connections of its
        # own: max_connections is not what they meet.
        logger.info(
            "%s: %s, to PgBouncer (DB_PGBOUNCER): its max_client_conn "
            "limits them, and its pool sizes, not this service, decide how many "
            "server connections are used; the server's max_connections is not "
            "checked",
            subject,
            budget,
        )
        return
    try:
        room = await server_room(engine)
    except (SQLAlchemyError, DatabaseUnavailable) as error:
        logger.info("%s not checked (%s): %s", subject, describe_error(error), budget)
        return
    if workers * per_process <= room.free:
        logger.info(
            "%s fits: %s; the server has room for %d (%s)",
            subject,
            budget,
            room.free,
            room,
        )
        return
    logger.warning(
        "%s exceeds the server's room: %s, but the server has room "
        "for %d (%s): under load, the connections past it are refused and their "
        "requests answer 503. Lower DB_POOL_SIZE, DB_MAX_OVERFLOW or %s "
        "(--workers), or raise the server's max_connections",
        subject,
        budget,
        room.free,
        room,
        WORKERS_VAR,
    )
