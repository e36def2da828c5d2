"""The example resource: create, read, list (paginated), update and delete items.

What it accepts, exactly as its OpenAPI document says:
- Ids, `limit` and `offset` are written in the digits 0-9 only: `/items/1.0`,
  `/items/+1` and `/items/%201` answer 422, not item 1.
- A name holds at least one character that is not whitespace (Unicode's
  White_Space characters), so a blank name is refused rather than stored.
- Text never holds NUL (PostgreSQL cannot store it): the `pattern`s below say
  so in the schema. Nor a lone surrogate, which JSON can escape but which is not
  Unicode text (I-JSON, RFC 7493, forbids it): pydantic's regex engine refuses it.
- PATCH changes the fields it is given: a field may be left out, never null.
"""

import re
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import MISSING, BaseModel, BeforeValidator, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import problem_responses
from ..limits import JsonBody
from ..models import ITEM_DESCRIPTION_MAX_LENGTH, ITEM_NAME_MAX_LENGTH, Item
from .dependencies import ReadSessionDep, SessionDep

router = APIRouter(
    prefix="/items",
    tags=["items"],
    # Every operation validates its input and touches the database.
    responses=problem_responses(422, 503, 504),
)

# The unique constraint on items.name (named by models.NAMING_CONVENTION).
NAME_IS_UNIQUE = "uq_items_name"

# Unicode's White_Space characters, spelt out so that every regex engine agrees:
# Python's \s also counts \x1c-\x1f, JavaScript's adds \ufeff.
WHITESPACE = r"\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Checked by pydantic and published as the fields' `pattern`. (Pydantic's regex
# engine matches Unicode text only, so a lone surrogate fails them too.)
DESCRIPTION_PATTERN = r"^[^\x00]*$"
NAME_PATTERN = rf"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$"

DIGITS = re.compile(r"[0-9]+")


def decimal_digits(value: object) -> object:
    """Refuse what int() would read but is not how a number is written in a URL:
    a sign, a decimal point, spaces or underscores."""
    if isinstance(value, str) and not DIGITS.fullmatch(value):
        raise ValueError("must be written with the digits 0-9 only")
    return value


Digits = BeforeValidator(decimal_digits)
# Ids are PostgreSQL bigints; a larger number could never match a row.
ItemId = Annotated[
    int,
    Path(ge=1, le=2**63 - 1, description="The item's id, in the digits 0-9 only."),
    Digits,
]
Name = Annotated[
    str,
    Field(
        min_length=1,
        max_length=ITEM_NAME_MAX_LENGTH,
        pattern=NAME_PATTERN,
        description="Unique; at least one character that is not whitespace; no NUL.",
    ),
]
Description = Annotated[
    str,
    Field(
        max_length=ITEM_DESCRIPTION_MAX_LENGTH,
        pattern=DESCRIPTION_PATTERN,
        description="Any text without NUL.",
    ),
]

# For operations that read a JSON body.
BODY_RESPONSES = problem_responses(400, 413, 415)


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Description = ""


class ItemUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # pydantic's MISSING: a field may be left out (and is then left out of
    # model_dump()), but null is refused, and the schema does not offer it.
    name: Name | MISSING = MISSING
    description: Description | MISSING = MISSING


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


def _broken_constraint(error: IntegrityError) -> str | None:
    driver_error = error.orig.__cause__ if error.orig is not None else None
    return getattr(driver_error, "constraint_name", None)


async def _flush_or_409(session: AsyncSession, item: Item) -> None:
    # The unique constraint, not a prior SELECT, decides: no race between requests.
    name = item.name
    try:
        await session.flush()
    except IntegrityError as error:
        if _broken_constraint(error) != NAME_IS_UNIQUE:
            raise  # any other broken constraint is a bug: a 500
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"An item named {name!r} already exists"
        ) from None


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[JsonBody],
    responses=BODY_RESPONSES | problem_responses(409),
)
async def create_item(payload: ItemCreate, session: SessionDep) -> ItemRead:
    item = Item(name=payload.name, description=payload.description)
    session.add(item)
    await _flush_or_409(session, item)
    return ItemRead.model_validate(item)


@router.get("/{item_id}", responses=problem_responses(404))
async def read_item(item_id: ItemId, session: ReadSessionDep) -> ItemRead:
    return ItemRead.model_validate(await _get_or_404(session, item_id))


@router.get("")
async def list_items(
    session: ReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=100), Digits] = 20,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1), Digits] = 0,
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


@router.patch(
    "/{item_id}",
    dependencies=[JsonBody],
    responses=BODY_RESPONSES | problem_responses(404, 409),
)
async def update_item(
    item_id: ItemId, payload: ItemUpdate, session: SessionDep
) -> ItemRead:
    item = await _get_or_404(session, item_id)
    for field, value in payload.model_dump().items():  # only the fields given
        setattr(item, field, value)
    await _flush_or_409(session, item)
    return ItemRead.model_validate(item)


@router.delete(
    "/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404),
)
async def delete_item(item_id: ItemId, session: SessionDep) -> Response:
    await session.delete(await _get_or_404(session, item_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
