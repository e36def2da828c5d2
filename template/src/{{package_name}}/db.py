"""The database layer: URL, engine, session factory and the request-scoped session."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from .settings import Settings

DRIVER = "postgresql+asyncpg"


def database_url(settings: Settings) -> URL:
    """The URL the engine connects to, with the password inside it.

    Built with URL.create, never by string formatting, so any character in a
    password works. Render it only with `hide_password=True` (the default of str()).
    """
    if settings.database_url is not None:
        return make_url(settings.database_url.get_secret_value()).set(drivername=DRIVER)
    password = settings.db_password.get_secret_value() if settings.db_password else None
    return URL.create(
        DRIVER,
        username=settings.db_user,
        password=password,
        host=settings.db_host,
        port=settings.db_port,
        database=settings.db_name,
    )


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
        # Passed to asyncpg.connect(); server_settings are sent once per connection.
        connect_args={
            "timeout": settings.connect_timeout,
            "server_settings": {"application_name": settings.application_name},
        },
    )


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
