"""Arted: runs (= execution-history records, with their recorder entities and history items).

Revision ID: 0013_arted
Revises: 0012_lora
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kiln.core.db import JSONType, UTCDateTime

revision = "0013_arted"
down_revision = "0012_lora"
branch_labels = None
depends_on = None


def upgrade() -> None:
    t = "arted_runs"
    op.create_table(
        t,
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("config_id", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("safety_level", sa.String(16), nullable=False),
        sa.Column("execution_mode", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("current_stage", sa.Integer(), nullable=False),
        sa.Column("current_step", sa.String(64), nullable=False),
        sa.Column("input_text", sa.Text(), nullable=False),
        sa.Column("final_output", sa.Text(), nullable=True),
        sa.Column("requested_seed", sa.BigInteger(), nullable=True),
        sa.Column("used_seed", sa.BigInteger(), nullable=True),
        sa.Column("options", JSONType, nullable=False),
        sa.Column("backend_info", JSONType, nullable=False),
        sa.Column("outputs", JSONType, nullable=False),
        sa.Column("error", JSONType, nullable=True),
        sa.Column("entities", JSONType, nullable=False),
        sa.Column("items", JSONType, nullable=False),
        sa.Column("entity_count", sa.Integer(), nullable=False),
        sa.Column("items_count", sa.Integer(), nullable=False),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=False),
        sa.Column("total_execution_time", sa.Float(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_arted_runs")),
    )
    op.create_index("ix_arted_runs_created", t, ["created_at", "id"])
    op.create_index("ix_arted_runs_config_created", t, ["config_id", "created_at"])
    op.create_index(op.f("ix_arted_runs_user_id"), t, ["user_id"])
    op.create_index(op.f("ix_arted_runs_session_id"), t, ["session_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_arted_runs_session_id"), table_name="arted_runs")
    op.drop_index(op.f("ix_arted_runs_user_id"), table_name="arted_runs")
    op.drop_index("ix_arted_runs_config_created", table_name="arted_runs")
    op.drop_index("ix_arted_runs_created", table_name="arted_runs")
    op.drop_table("arted_runs")
