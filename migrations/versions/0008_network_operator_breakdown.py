"""Network measurements keep a per-operator breakdown (ExecuTorch's ETDump of the network).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 19:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: only runtime executorch profiles its networks. ADD COLUMN of a nullable column needs no table
    # rebuild on SQLite.
    op.add_column("network_measurements", sa.Column("operator_breakdown", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("network_measurements") as batch:  # SQLite drops a column through a copy of the table
        batch.drop_column("operator_breakdown")
