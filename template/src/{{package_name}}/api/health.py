"""Liveness with a real database round trip, for load balancers and orchestrators."""

import logging
from typing import Literal

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from ..db import database_location, round_trip_error
from ..errors import describe_error

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "error"]
    database: Literal["ok", "unavailable"]


@router.get(
    "/health",
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Health}},
)
async def health(request: Request, response: Response) -> Health:
    engine: AsyncEngine = request.app.state.engine
    error = await round_trip_error(engine)
    if error is not None:
        logger.warning(
            "health check failed (%s): %s",
            describe_error(error),
            database_location(engine.url),
        )
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="error", database="unavailable")
    return Health(status="ok", database="ok")
