"""Database tables, as SQLAlchemy declarative models. Alembic migrates to match them."""

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, MetaData, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Constraint names that are stable across databases, so migrations can drop them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ITEM_NAME_MAX_LENGTH = 100
ITEM_DESCRIPTION_MAX_LENGTH = 1000


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Item(Base):
    """The example resource: replace it with your own tables."""

    __tablename__ = "items"
    # Fetch server-generated columns (ids, timestamps) with RETURNING in the same
    # statement: async code cannot lazy-load them afterwards.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012 (read by SQLAlchemy)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(ITEM_NAME_MAX_LENGTH), unique=True)
    description: Mapped[str] = mapped_column(
        String(ITEM_DESCRIPTION_MAX_LENGTH), server_default=""
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # Set by each UPDATE to the time that statement started. Not now(): that is
    # when the transaction began, so a transaction that inserts and then updates
    # a row would leave updated_at unchanged. (statement_timestamp(), not
    # clock_timestamp(): every row one statement updates gets the same time.)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        server_default=func.now(),
        onupdate=func.statement_timestamp(),
    )
