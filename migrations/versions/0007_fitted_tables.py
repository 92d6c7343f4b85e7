"""Fitted tables: the fit quality of a table `hwnas lut fit` stored as an imported table (format hwnas-fit).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 08:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: published tables have no fit. ADD COLUMN of a nullable column needs no table rebuild on SQLite.
    op.add_column("imported_tables", sa.Column("fit", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("imported_tables") as batch:  # SQLite drops a column through a copy of the table
        batch.drop_column("fit")
