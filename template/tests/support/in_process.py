"""Calling the app in-process, the way every HTTP test here does."""

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI


def client_for(app: FastAPI) -> httpx.AsyncClient:
    """A client calling `app` in-process. It holds no connection, so closing it
    is optional (the `client` fixture does not)."""
    # raise_app_exceptions=False: an unhandled error becomes a 500, as in production.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@contextlib.asynccontextmanager
async def in_process_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as client:
        yield client


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its real lifespan (engine created, probed and disposed as in
    production), and a client calling it in-process."""
    async with app.router.lifespan_context(app), in_process_client(app) as client:
        yield client
