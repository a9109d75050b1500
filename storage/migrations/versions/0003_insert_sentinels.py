"""Insert sentinels: a nullable integer column on the tables the ingest path inserts many rows into at once
(incident, alert, timelineevent, outbox), so SQLAlchemy can send them as one INSERT … RETURNING on SQLite and
still match each returned id to its row.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("incident", "alert", "timelineevent", "outbox")


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table in TABLES:
        if "sentinel" in {c["name"] for c in inspector.get_columns(table)}:
            continue  # a database made by create_all of this release's models (tests; never a real release)
        op.add_column(table, sa.Column("sentinel", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("sentinel")
