"""Media: items, task logs, detections, load samples, user activity, response stats.

Revision ID: 0004_media
Revises: 0003_robotics
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kiln.core.db import JSONType, UTCDateTime

revision = "0004_media"
down_revision = "0003_robotics"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "media_items",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("mime", sa.String(64), nullable=True),
        sa.Column("blob_key", sa.String(512), nullable=False),
        sa.Column("thumbnail_key", sa.String(512), nullable=True),
        sa.Column("hf_path", sa.String(512), nullable=True),
        sa.Column("hf_thumbnail_path", sa.String(512), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("phash", sa.String(16), nullable=True),
        sa.Column("technical_metadata", JSONType, nullable=True),
        sa.Column("camera_make", sa.String(128), nullable=True),
        sa.Column("camera_model", sa.String(128), nullable=True),
        sa.Column("taken_at", UTCDateTime(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lng", sa.Float(), nullable=True),
        sa.Column("altitude", sa.Float(), nullable=True),
        sa.Column("address", sa.String(255), nullable=True),
        sa.Column("has_trash", sa.Boolean(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("detector", sa.String(255), nullable=True),
        sa.Column("worker_name", sa.String(200), nullable=True),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_media_items_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_items")),
    )
    op.create_index("ix_media_items_user_created", "media_items", ["user_id", "created_at"])
    op.create_index("ix_media_items_user_sha256", "media_items", ["user_id", "sha256"])
    op.create_index("ix_media_items_user_lat_lng", "media_items", ["user_id", "lat", "lng"])
    op.create_index("ix_media_items_status_updated", "media_items", ["status", "updated_at"])

    op.create_table(
        "media_task_logs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("media_id", sa.String(36), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("worker_name", sa.String(200), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["media_id"],
            ["media_items.id"],
            name=op.f("fk_media_task_logs_media_id_media_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_task_logs")),
    )
    op.create_index("ix_media_task_logs_media_at", "media_task_logs", ["media_id", "at"])

    op.create_table(
        "media_detections",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("media_id", sa.String(36), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("bbox", JSONType, nullable=False),
        sa.Column("area_sqm", sa.Float(), nullable=True),
        sa.Column("is_manual", sa.Boolean(), nullable=False),
        sa.Column("detector", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["media_id"],
            ["media_items.id"],
            name=op.f("fk_media_detections_media_id_media_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_detections")),
    )
    op.create_index(op.f("ix_media_detections_media_id"), "media_detections", ["media_id"])

    op.create_table(
        "media_load_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("cpu_percent", sa.Float(), nullable=False),
        sa.Column("memory_percent", sa.Float(), nullable=False),
        sa.Column("load", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_load_samples")),
    )
    op.create_index(op.f("ix_media_load_samples_at"), "media_load_samples", ["at"])

    op.create_table(
        "media_user_activity",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("hour", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "hour", name=op.f("pk_media_user_activity")),
    )
    op.create_index(op.f("ix_media_user_activity_hour"), "media_user_activity", ["hour"])
    op.create_index(op.f("ix_media_user_activity_last_seen_at"), "media_user_activity", ["last_seen_at"])

    op.create_table(
        "media_response_stats",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("total_ms", sa.Float(), nullable=False),
        sa.Column("max_ms", sa.Float(), nullable=False),
        sa.Column("histogram", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_response_stats")),
    )
    op.create_index(op.f("ix_media_response_stats_at"), "media_response_stats", ["at"])


def downgrade() -> None:
    for table in (
        "media_response_stats",
        "media_user_activity",
        "media_load_samples",
        "media_detections",
        "media_task_logs",
        "media_items",
    ):
        op.drop_table(table)
