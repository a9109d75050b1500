"""Telegram webhook mode: the inbox of updates Telegram posted (stored before they are acknowledged,
de-duplicated on update_id across replicas).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("telegramupdate"):
        return  # a database made by create_all of this release's models (tests; never a real release)
    op.create_table(
        "telegramupdate",
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("update_id"),
    )
    op.create_index("ix_telegramupdate_pending", "telegramupdate", ["done_at", "claimed_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_telegramupdate_pending", table_name="telegramupdate")
    op.drop_table("telegramupdate")
