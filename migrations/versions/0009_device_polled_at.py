"""Devices remember when an agent last asked for work and found none (their "last seen" while idle).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 22:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: a device no agent has polled for since this revision has no such time. ADD COLUMN of a nullable
    # column needs no table rebuild on SQLite.
    op.add_column("devices", sa.Column("polled_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:  # SQLite drops a column through a copy of the table
        batch.drop_column("polled_at")
