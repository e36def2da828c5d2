"""Session factories: what the request dependencies (api/dependencies.py) open."""

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after commit, without the
    # implicit I/O that async code cannot do when serialising a response.
    return async_sessionmaker(engine, expire_on_commit=False)
