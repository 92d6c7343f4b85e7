"""Lease holders by token, job-level reasons, token expiry.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 04:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The lease holder is the agent token's name (who the caller is), not the agent field of a body.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("holder", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("reason", sa.String(length=4000), nullable=True))
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("expires_at")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("reason")
        batch.drop_column("holder")
