"""Liveness and readiness, for load balancers, orchestrators and health checks.

`/live` says the process serves HTTP: it touches no database and never waits,
so restarting the service on its failure is always right. `/ready` says the
service can serve requests now: one `SELECT 1` round trip, bounded by its own
short timeout, so a probe learns of an outage or an exhausted pool within
READY_TIMEOUT seconds instead of waiting DB_POOL_TIMEOUT. It also reports the
read replica ("ok", "down", or "none" when there is none) without failing when
only the replica is down: the primary serves reads meanwhile. `/health` is
`/ready` under its old name, kept for compatibility.
"""

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from ..db.engine import database_location, round_trip_error_within
from ..db.failures import describe_error
from ..db.replicas import ReadRouter, ReplicaState
from ..errors import RETRY_AFTER_SECONDS, problem, problem_responses

# Seconds /ready waits for a connection and its round trip before answering 503;
# below the usual probe timeouts (a Kubernetes probe's default is 1 s, Docker's 30 s).
READY_TIMEOUT = 2.0

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


class Live(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ok"]
    database: Literal["ok"]
    replica: ReplicaState


@router.get("/live")
async def live() -> Live:
    return Live(status="ok")


@router.get(
    "/health",
    response_model=Ready,
    responses=problem_responses(503),
    deprecated=True,
    summary="Ready (the former name of /ready)",
)
@router.get("/ready", response_model=Ready, responses=problem_responses(503))
async def ready(request: Request) -> Ready | Response:
    engine: AsyncEngine = request.app.state.read_engine
    read_router: ReadRouter = request.app.state.read_router
    # Both at once, so neither waits for the other.
    error, replica = await asyncio.gather(
        round_trip_error_within(engine, READY_TIMEOUT),
        read_router.replica_state(READY_TIMEOUT),
    )
    if error is not None:
        logger.warning(
            "readiness check failed (%s): %s",
            describe_error(error),
            database_location(engine.url),
        )
        return problem(
            503,
            "The database is unavailable or busy; retry shortly.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return Ready(status="ok", database="ok", replica=replica)
