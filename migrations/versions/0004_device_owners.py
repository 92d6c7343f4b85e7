"""Device owners (the agent token that registered a device) and agent tokens limited to devices.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 05:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Devices registered before this revision have no owner: the next agent token that updates one becomes it.
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=128), nullable=True))
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("devices", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("devices")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("owner")
