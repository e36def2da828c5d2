"""The baseline: FastAPI on a raw asyncpg pool, serving the generated project's
read, list, create and readiness endpoints with the same SQL and the same JSON.

What a hand-written FastAPI service on asyncpg would be: pydantic models of the
same fields, serialised by FastAPI from the return annotations, a pool opened
in the lifespan, no ORM, no middleware. The bench runs it from the rendered
project's environment, so both sides use the same FastAPI, pydantic, uvicorn
and asyncpg versions, with the same uvicorn options:

    <render>/.venv/bin/python -m uvicorn raw_app:app --app-dir bench --port 8001

It reads BENCH_DATABASE_URL (postgresql://user:password@host:port/db),
BENCH_RAW_POOL_SIZE (connections, opened at start-up; default 10, asyncpg's)
and BENCH_APPLICATION_NAME (how its connections name themselves).
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

# The statements the generated endpoints run (the Item model's columns, in its order).
READ_ONE = (
    "SELECT id, name, description, created_at, updated_at FROM items WHERE id = $1"
)
COUNT = "SELECT count(*) FROM items"
READ_PAGE = (
    "SELECT id, name, description, created_at, updated_at FROM items "
    "ORDER BY id LIMIT $1 OFFSET $2"
)
INSERT = (
    "INSERT INTO items (name, description) VALUES ($1, $2) "
    "RETURNING id, name, description, created_at, updated_at"
)


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=1000)


class ItemRead(BaseModel):
    id: int
    name: str
    description: str
    created_at: datetime
    updated_at: datetime


class ItemPage(BaseModel):
    items: list[ItemRead]
    total: int
    limit: int
    offset: int


class Ready(BaseModel):
    status: Literal["ok"]
    database: Literal["ok"]
    # The generated service's answer without a read replica configured.
    replica: Literal["none"]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    size = int(os.environ.get("BENCH_RAW_POOL_SIZE", "10"))
    async with asyncpg.create_pool(
        os.environ["BENCH_DATABASE_URL"],
        min_size=size,
        max_size=size,
        server_settings={
            "application_name": os.environ.get("BENCH_APPLICATION_NAME", "bench_raw")
        },
    ) as pool:
        app.state.pool = pool
        yield


app = FastAPI(title="Raw asyncpg baseline", lifespan=lifespan)


def pool_of(request: Request) -> Any:
    return request.app.state.pool


@app.get("/items/{item_id}")
async def read_item(item_id: int, request: Request) -> ItemRead:
    record = await pool_of(request).fetchrow(READ_ONE, item_id)
    if record is None:
        raise HTTPException(404, f"Item {item_id} not found")
    return ItemRead(**record)


@app.get("/items")
async def list_items(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ItemPage:
    async with pool_of(request).acquire() as connection:
        total: int = await connection.fetchval(COUNT)
        records = await connection.fetch(READ_PAGE, limit, offset)
    return ItemPage(
        items=[ItemRead(**record) for record in records],
        total=total,
        limit=limit,
        offset=offset,
    )


@app.post("/items", status_code=201)
async def create_item(payload: ItemCreate, request: Request) -> ItemRead:
    try:
        record = await pool_of(request).fetchrow(
            INSERT, payload.name, payload.description
        )
    except asyncpg.UniqueViolationError:
        raise HTTPException(409, f"An item named {payload.name!r} exists") from None
    return ItemRead(**record)


@app.get("/ready")
@app.get("/health")
async def ready(request: Request) -> Ready:
    await pool_of(request).fetchval("SELECT 1")
    return Ready(status="ok", database="ok", replica="none")
