"""Session factories: what the request dependencies (api/dependencies.py) open.

Two kinds. A read-write session runs each request in one transaction, committed
at the end. A read-only session runs each statement on its own, with no BEGIN and
no COMMIT: a read costs one round trip instead of three, but two statements of
one request may see different snapshots (a write committed in between). Use it
for reads that need no transaction; it refuses to write.
"""

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)
from sqlalchemy.orm import ORMExecuteState, Session


class ReadOnlySessionError(Exception):
    """Something was added, changed or deleted through a read-only session."""


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after commit, without the
    # implicit I/O that async code cannot do when serialising a response.
    return async_sessionmaker(engine, expire_on_commit=False)


def read_only_engine(engine: AsyncEngine, *, pgbouncer: bool) -> AsyncEngine:
    """`engine` (the same pool) with connections that run statements outside a
    transaction. Behind PgBouncer in transaction mode, a statement outside a
    transaction can be prepared on one server connection and executed on
    another, so there each read-only request is one `BEGIN READ ONLY`
    transaction instead."""
    if pgbouncer:
        return engine.execution_options(postgresql_readonly=True)
    return engine.execution_options(isolation_level="AUTOCOMMIT")


class ReadOnlySession(Session):
    """The session behind a read-only AsyncSession: it refuses the ORM's writes
    (add, change, delete; insert, update and delete statements) rather than run
    them outside a transaction. Raw SQL (text()) is not inspected."""


@event.listens_for(ReadOnlySession, "before_flush")
def _refuse_flush(session: Session, flush_context: Any, instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise ReadOnlySessionError(
            "this session is read-only: take a SessionDep to add, change or delete"
        )


@event.listens_for(ReadOnlySession, "do_orm_execute")
def _refuse_write_statements(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise ReadOnlySessionError(
            "this session is read-only: take a SessionDep to insert, update or delete"
        )


def create_read_session_factory(
    bind: AsyncEngine | AsyncConnection,
) -> async_sessionmaker[AsyncSession]:
    """Read-only sessions on `bind`: a read_only_engine, or in tests the
    connection whose transaction each test rolls back."""
    return async_sessionmaker(
        bind,
        sync_session_class=ReadOnlySession,
        expire_on_commit=False,
        autoflush=False,
    )
