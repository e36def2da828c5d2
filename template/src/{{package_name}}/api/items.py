"""The example resource: create, read, list (paginated), update and delete items."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..db import SessionDep
from ..models import ITEM_DESCRIPTION_MAX_LENGTH, ITEM_NAME_MAX_LENGTH, Item

router = APIRouter(prefix="/items", tags=["items"])


def storable_text(value: str) -> str:
    """Refuse, as a 422, text that PostgreSQL would refuse as a 500: it cannot
    store NUL, and a lone surrogate (legal in JSON) is not UTF-8."""
    if "\x00" in value:
        raise ValueError("must not contain the NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


# Ids are PostgreSQL bigints; a larger number could never match a row.
ItemId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Name = Annotated[
    str,
    Field(min_length=1, max_length=ITEM_NAME_MAX_LENGTH),
    AfterValidator(storable_text),
]
Description = Annotated[
    str,
    Field(max_length=ITEM_DESCRIPTION_MAX_LENGTH),
    AfterValidator(storable_text),
]


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Description = ""


class ItemUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None


class ItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

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


async def _get_or_404(session: AsyncSession, item_id: int) -> Item:
    item = await session.get(Item, item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Item {item_id} not found")
    return item


async def _flush_or_409(session: AsyncSession, name: str | None) -> None:
    # The unique constraint, not a prior SELECT, decides: no race between requests.
    try:
        await session.flush()
    except IntegrityError:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"An item named {name!r} already exists"
        ) from None


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_item(payload: ItemCreate, session: SessionDep) -> ItemRead:
    item = Item(name=payload.name, description=payload.description)
    session.add(item)
    await _flush_or_409(session, payload.name)
    return ItemRead.model_validate(item)


@router.get("/{item_id}")
async def read_item(item_id: ItemId, session: SessionDep) -> ItemRead:
    return ItemRead.model_validate(await _get_or_404(session, item_id))


@router.get("")
async def list_items(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> ItemPage:
    total = await session.scalar(select(func.count()).select_from(Item))
    rows = await session.scalars(
        select(Item).order_by(Item.id).limit(limit).offset(offset)
    )
    return ItemPage(
        items=[ItemRead.model_validate(item) for item in rows],
        total=total or 0,
        limit=limit,
        offset=offset,
    )


@router.patch("/{item_id}")
async def update_item(
    item_id: ItemId, payload: ItemUpdate, session: SessionDep
) -> ItemRead:
    item = await _get_or_404(session, item_id)
    for field, value in payload.model_dump(exclude_unset=True).items():
        if value is None:
            raise HTTPException(422, f"{field} may not be null")
        setattr(item, field, value)
    await _flush_or_409(session, payload.name)
    return ItemRead.model_validate(item)


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_item(item_id: ItemId, session: SessionDep) -> Response:
    await session.delete(await _get_or_404(session, item_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
