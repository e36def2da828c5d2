"""Request dependencies: the database session an endpoint receives, by
annotating a parameter with SessionDep."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


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
