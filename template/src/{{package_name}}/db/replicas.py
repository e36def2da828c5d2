"""A read replica: requests that only read (ReadSessionDep) go to it while it
answers, and to the primary otherwise. Writes always go to the primary.

Routing is per request, never per statement: a request's reads all come from
one server. Its session takes a replica connection when it opens, waiting at
most REPLICA_TIMEOUT; when none can be had (the replica is down, unreachable,
refuses the login or its pool is busy), the request reads from the primary
instead, without failing, and the replica is skipped for RETRY_AFTER seconds
so that following requests do not each wait. Then one request tries it again,
and reads go back to it as soon as it answers.

A streaming replica replays the primary's writes a little later, so a read
there may not see a write just committed: reads that must see the latest
writes take SessionDep, which always uses the primary.
"""

import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Literal

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from ..settings import (
    Settings,
)
from .connection import chosen
from .engine import create_engine, database_location, round_trip_error_within
from .failures import DatabaseMisconfigured, DatabaseUnavailable, describe_error
from .sessions import create_read_session_factory

# The longest a request waits for a replica connection, to open one or for its
# busy pool to free one, before it reads from the primary instead (less when
# DB_CONNECT_TIMEOUT or DB_POOL_TIMEOUT is less).
REPLICA_TIMEOUT = 2.0
# Seconds the primary serves every read after the replica failed to.
RETRY_AFTER = 5.0

ReplicaState = Literal["ok", "down", "none"]

logger = logging.getLogger(__name__)


def create_replica_engine(settings: Settings) -> AsyncEngine | None:
    """The replica's engine and pool (the same settings as the primary's, at the
    replica's URL), or None when no replica URL is set."""
    if settings.replica_url is None:
        return None
    replica = settings.with_url(settings.replica_url)
    connect_timeout = chosen(
        replica, "connect_timeout", replica.url_parameters.connect_timeout
    )
    return create_engine(
        replica.model_copy(
            update={
                "connect_timeout": min(connect_timeout, REPLICA_TIMEOUT),
                "pool_timeout": min(replica.pool_timeout, REPLICA_TIMEOUT),
                # Routing is decided at checkout, so a checked-out connection
                # must work: pre-ping replaces those a stopped replica closed.
                "pool_pre_ping": True,
            }
        ),
        # Every checkout, even under traffic: a replica that just stopped
        # leaves connections that look open, and a request routed to one would
        # fail instead of reading from the primary. One more round trip per
        # replica read (a simple-protocol SELECT 1).
        ping_idle_after=0.0,
    )


class ReadRouter:
    """Hands each read-only request a session on the replica while it answers,
    else on the primary. `primary` is the primary's read-only engine (in tests,
    the connection each test rolls back); `replica` the replica's, if any."""

    def __init__(
        self,
        primary: AsyncEngine | AsyncConnection,
        replica: AsyncEngine | None = None,
    ) -> None:
        self.primary = primary
        self.replica = replica
        self.sessions = create_read_session_factory(primary)
        # time.monotonic() until which reads skip the replica; 0 while it answers.
        self.down_until = 0.0

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A read-only session for one request."""
        async with AsyncExitStack() as stack:
            bind = await self._replica_connection(stack) or self.primary
            async with self.sessions(bind=bind) as session:
                yield session

    async def replica_state(self, within: float) -> ReplicaState:
        """For /ready: "none" without a replica, "down" while reads skip it,
        else what one round trip within `within` seconds says (and routing
        follows that answer)."""
        if self.replica is None:
            return "none"
        if not self._try_replica():
            return "down"
        error = await round_trip_error_within(self.replica, within)
        if error is not None:
            self._mark_down(self.replica, error)
            return "down"
        self._mark_up(self.replica)
        return "ok"

    async def _replica_connection(
        self, stack: AsyncExitStack
    ) -> AsyncConnection | None:
        """A replica connection, returned to its pool when `stack` closes; None
        when there is no replica, reads skip it, or it gives none in time."""
        if self.replica is None or not self._try_replica():
            return None
        try:
            connection = await stack.enter_async_context(self.replica.connect())
        except (DatabaseUnavailable, SQLAlchemyError, OSError) as error:
            self._mark_down(self.replica, error)
            return None
        self._mark_up(self.replica)
        return connection

    def _try_replica(self) -> bool:
        """Whether this request tries the replica: always while it answers;
        while it is down, one request once RETRY_AFTER has passed, the others
        staying on the primary until that one knows."""
        now = time.monotonic()
        if now < self.down_until:
            return False
        if self.down_until:
            self.down_until = now + RETRY_AFTER
        return True

    def _mark_down(self, replica: AsyncEngine, error: BaseException) -> None:
        if not self.down_until:  # one line per outage
            log = (
                logger.error
                if isinstance(error, DatabaseMisconfigured)
                else logger.warning
            )
            log(
                "read replica unavailable (%s): %s; reads go to the primary, "
                "the replica is tried again every %s s",
                describe_error(error),
                database_location(replica.url),
                RETRY_AFTER,
            )
        self.down_until = time.monotonic() + RETRY_AFTER

    def _mark_up(self, replica: AsyncEngine) -> None:
        if self.down_until:
            logger.info(
                "read replica answers again: %s", database_location(replica.url)
            )
        self.down_until = 0.0
