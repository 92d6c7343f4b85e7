"""Imported latency tables: where a published table came from, its statistics as published; read-only.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 08:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "imported_tables",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("runtime", sa.String(length=64), nullable=False),
        sa.Column("threads", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("project", sa.String(length=256), nullable=False),
        sa.Column("source_file", sa.String(length=512), nullable=False),
        sa.Column("source_commit", sa.String(length=64), nullable=True),
        sa.Column("source_device", sa.String(length=256), nullable=False),
        sa.Column("source_runtime", sa.String(length=128), nullable=True),
        sa.Column("licence", sa.String(length=1000), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=True),
        sa.Column("source_column", sa.String(length=64), nullable=True),
        sa.Column("gauge", sa.Text(), nullable=True),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("statistics", sa.JSON(), nullable=False),
        sa.Column("unmappable", sa.JSON(), nullable=False),
        sa.Column("imported_by", sa.String(length=128), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_imported_tables_device_id_devices"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["measurement_runs.id"], name=op.f("fk_imported_tables_run_id_measurement_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imported_tables")),
        sa.UniqueConstraint("device_id", "runtime", "threads", name=op.f("uq_imported_tables_device_id_runtime_threads")),
    )


def downgrade() -> None:
    op.drop_table("imported_tables")
