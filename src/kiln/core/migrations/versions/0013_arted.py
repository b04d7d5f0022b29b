"""Arted: runs (= execution-history records), recorder entities, history items.

Revision ID: 0013_arted
Revises: 0007_media_grid_lng
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kiln.core.db import JSONType, UTCDateTime

revision = "0013_arted"
down_revision = "0007_media_grid_lng"
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
        sa.Column("entity_count", sa.Integer(), nullable=False),
        sa.Column("items_count", sa.Integer(), nullable=False),
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

    t = "arted_entities"
    op.create_table(
        t,
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(160), nullable=False),
        sa.Column("mime_type", sa.String(128), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("blob_key", sa.String(400), nullable=True),
        sa.Column("meta", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["arted_runs.id"], name=op.f("fk_arted_entities_run_id_arted_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "sequence", name=op.f("pk_arted_entities")),
    )

    t = "arted_items"
    op.create_table(
        t,
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("sequence_number", sa.Integer(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("item_type", sa.String(48), nullable=False),
        sa.Column("media_type", sa.String(16), nullable=False),
        sa.Column("loop_iteration", sa.Integer(), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("file_path", sa.String(400), nullable=True),
        sa.Column("config_used", sa.String(128), nullable=True),
        sa.Column("model_used", sa.String(200), nullable=True),
        sa.Column("backend_used", sa.String(32), nullable=True),
        sa.Column("execution_time", sa.Float(), nullable=True),
        sa.Column("meta", JSONType, nullable=False),
        sa.Column("timestamp", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["arted_runs.id"], name=op.f("fk_arted_items_run_id_arted_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "sequence_number", name=op.f("pk_arted_items")),
    )


def downgrade() -> None:
    op.drop_table("arted_items")
    op.drop_table("arted_entities")
    op.drop_index(op.f("ix_arted_runs_session_id"), table_name="arted_runs")
    op.drop_index(op.f("ix_arted_runs_user_id"), table_name="arted_runs")
    op.drop_index("ix_arted_runs_config_created", table_name="arted_runs")
    op.drop_index("ix_arted_runs_created", table_name="arted_runs")
    op.drop_table("arted_runs")
