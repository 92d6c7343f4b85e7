"""Whole networks: networks by arch id, their measurements, job items for networks, table calibrations.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 04:30:16.288346
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Network measurements hang off measurement_runs, like operator measurements: one run
    # (device, runtime, threads, agent) may carry both, measured in the same rounds.
    op.create_table(
        "networks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("arch_id", sa.String(length=64), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("input_shape", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_networks")),
        sa.UniqueConstraint("arch_id", name=op.f("uq_networks_arch_id")),
    )
    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("runtime", sa.String(length=64), nullable=False),
        sa.Column("threads", sa.Integer(), nullable=False),
        sa.Column("scale", sa.Float(), nullable=False),
        sa.Column("offset_ms", sa.Float(), nullable=False),
        sa.Column("networks", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=64), nullable=False),
        sa.Column("mape_before", sa.Float(), nullable=True),
        sa.Column("mape_after", sa.Float(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_calibrations_device_id_devices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calibrations")),
    )
    with op.batch_alter_table("calibrations", schema=None) as batch_op:
        batch_op.create_index("ix_calibrations_table", ["device_id", "runtime", "threads"], unique=False)

    op.create_table(
        "network_measurements",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("median_ms", sa.Float(), nullable=False),
        sa.Column("p10_ms", sa.Float(), nullable=True),
        sa.Column("p90_ms", sa.Float(), nullable=True),
        sa.Column("mean_ms", sa.Float(), nullable=True),
        sa.Column("std_ms", sa.Float(), nullable=True),
        sa.Column("min_ms", sa.Float(), nullable=True),
        sa.Column("iterations", sa.Integer(), nullable=False),
        sa.Column("warmup", sa.Integer(), nullable=False),
        sa.Column("samples_ms", sa.JSON(), nullable=True),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["network_id"], ["networks.id"], name=op.f("fk_network_measurements_network_id_networks")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["measurement_runs.id"], name=op.f("fk_network_measurements_run_id_measurement_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_measurements")),
        sa.UniqueConstraint("run_id", "network_id", name=op.f("uq_network_measurements_run_id_network_id")),
    )
    with op.batch_alter_table("network_measurements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_network_measurements_network_id"), ["network_id"], unique=False)

    op.create_table(
        "job_networks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("measurement_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_networks_job_id_jobs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["measurement_id"],
            ["network_measurements.id"],
            name=op.f("fk_job_networks_measurement_id_network_measurements"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(["network_id"], ["networks.id"], name=op.f("fk_job_networks_network_id_networks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_networks")),
        sa.UniqueConstraint("job_id", "network_id", name=op.f("uq_job_networks_job_id_network_id")),
    )


def downgrade() -> None:
    op.drop_table("job_networks")
    with op.batch_alter_table("network_measurements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_network_measurements_network_id"))

    op.drop_table("network_measurements")
    with op.batch_alter_table("calibrations", schema=None) as batch_op:
        batch_op.drop_index("ix_calibrations_table")

    op.drop_table("calibrations")
    op.drop_table("networks")
