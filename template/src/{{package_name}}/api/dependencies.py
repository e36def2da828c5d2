"""Request dependencies: the database session an endpoint receives.

    async def create_thing(payload: ThingCreate, session: SessionDep) -> Thing
    async def read_thing(thing_id: int, session: ReadSessionDep) -> Thing

SessionDep runs the request in one transaction, committed when the endpoint
returns. ReadSessionDep is for endpoints that only read: no transaction (each
statement on its own, see db/sessions.py), so a read costs one round trip, and
it refuses to write. With a read replica configured, it reads there while the
replica answers: a read that must see the latest writes takes SessionDep.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..db.replicas import ReadRouter


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


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One read-only session per request, on the read replica while it answers
    (see db/replicas.py), closed when the endpoint returns."""
    read_router: ReadRouter = request.app.state.read_router
    async with read_router.session() as session:
        yield session


# scope="function" runs the commit before the response is sent, so a failed
# commit becomes an error response instead of a success for a lost write; for
# reads, it returns the connection to the pool before the response is sent.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
