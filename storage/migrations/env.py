"""Alembic's environment for alertpilot (storage/migrate.py runs it; there is no alembic.ini).

The connection comes from storage/migrate.py (``config.attributes["connection"]``), already inside the
transaction (and, on PostgreSQL, holding the migration lock), so two replicas starting together migrate once.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlmodel import SQLModel

from storage import tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from storage.tables import UTCDateTime


def render_item(kind: str, obj: Any, autogen_context: Any) -> str | bool:
    """Write column types as plain SQLAlchemy types, so migration files never import application code:
    UTCDateTime is a DateTime in the database, SQLModel's AutoString a String."""
    if kind == "type":
        if isinstance(obj, UTCDateTime):
            return "sa.DateTime()"
        if type(obj).__name__ == "AutoString":
            return "sa.String()"
    return False


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("alertpilot migrations run through `alertpilot db upgrade` (storage/migrate.py)")
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite changes columns by copying the table
    render_item=render_item,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
