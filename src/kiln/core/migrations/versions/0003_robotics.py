"""Robotics: assets, metadata, tags, configs and revisions, drafts, conversion runs, outputs.

Revision ID: 0003_robotics
Revises: 0002_auth
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kiln.core.db import JSONType, UTCDateTime

revision = "0003_robotics"
down_revision = "0002_auth"
branch_labels = None
depends_on = None


def _id(name: str = "id", **kw: object) -> sa.Column:
    return sa.Column(name, sa.String(36), **kw)


def _json(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, JSONType, nullable=nullable)


def _pk(table: str, *cols: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*cols, name=op.f(f"pk_{table}"))


def _fk(table: str, col: str, ref: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([col], [f"{ref}.id"], name=op.f(f"fk_{table}_{col}_{ref}"), ondelete=ondelete)


def upgrade() -> None:
    t = "robotics_assets"
    op.create_table(
        t,
        _id(nullable=False),
        sa.Column("file_path", sa.Text(), nullable=False),
        sa.Column("file_name", sa.String(512), nullable=False),
        sa.Column("file_type", sa.String(16), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("indexing_status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=True),
        sa.Column("last_indexed_at", UTCDateTime(), nullable=True),
        sa.Column("registered_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _pk(t, "id"),
        sa.UniqueConstraint("file_path", name=op.f("uq_robotics_assets_file_path")),
    )
    op.create_index("ix_robotics_assets_registered", t, ["registered_at", "id"])
    op.create_index(op.f("ix_robotics_assets_file_type"), t, ["file_type"])
    op.create_index(op.f("ix_robotics_assets_indexing_status"), t, ["indexing_status"])
    op.create_index(op.f("ix_robotics_assets_content_sha256"), t, ["content_sha256"])

    t = "robotics_asset_metadata"
    op.create_table(
        t,
        _id("asset_id", nullable=False),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("start_time", UTCDateTime(), nullable=True),
        sa.Column("end_time", UTCDateTime(), nullable=True),
        sa.Column("topic_count", sa.Integer(), nullable=False),
        sa.Column("message_count", sa.BigInteger(), nullable=False),
        _json("sensor_types"),
        _json("topics"),
        _json("default_episode", True),
        _json("visualization_summary", True),
        _json("raw_metadata"),
        sa.Column("indexing_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _fk(t, "asset_id", "robotics_assets", "CASCADE"),
        _pk(t, "asset_id"),
    )
    op.create_index(op.f("ix_robotics_asset_metadata_start_time"), t, ["start_time"])

    t = "robotics_tags"
    op.create_table(
        t,
        _id(nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("normalized_name", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _pk(t, "id"),
        sa.UniqueConstraint("normalized_name", name=op.f("uq_robotics_tags_normalized_name")),
    )

    t = "robotics_asset_tags"
    op.create_table(
        t,
        _id("asset_id", nullable=False),
        _id("tag_id", nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        _fk(t, "asset_id", "robotics_assets", "CASCADE"),
        _fk(t, "tag_id", "robotics_tags", "CASCADE"),
        _pk(t, "asset_id", "tag_id"),
    )
    op.create_index(op.f("ix_robotics_asset_tags_tag_id"), t, ["tag_id"])

    t = "robotics_job_assets"
    op.create_table(
        t,
        _id("job_id", nullable=False),
        _id("asset_id", nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        _fk(t, "job_id", "jobs", "CASCADE"),
        _pk(t, "job_id", "asset_id"),
    )
    op.create_index(op.f("ix_robotics_job_assets_asset_id"), t, ["asset_id"])

    t = "robotics_conversion_configs"
    op.create_table(
        t,
        _id(nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("normalized_name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        _json("metadata_json"),
        _json("spec_document"),
        sa.Column("spec_document_version", sa.Integer(), nullable=False),
        sa.Column("invalid_reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("last_opened_at", UTCDateTime(), nullable=True),
        _pk(t, "id"),
        sa.UniqueConstraint("normalized_name", name=op.f("uq_robotics_conversion_configs_normalized_name")),
    )
    op.create_index(op.f("ix_robotics_conversion_configs_updated_at"), t, ["updated_at"])

    t = "robotics_config_revisions"
    op.create_table(
        t,
        _id(nullable=False),
        _id("config_id", nullable=False),
        sa.Column("revision_number", sa.Integer(), nullable=False),
        sa.Column("change_kind", sa.String(16), nullable=False),
        sa.Column("change_summary", sa.Text(), nullable=True),
        _json("metadata_json"),
        _json("spec_document"),
        sa.Column("spec_document_version", sa.Integer(), nullable=False),
        sa.Column("invalid_reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        _fk(t, "config_id", "robotics_conversion_configs", "CASCADE"),
        _pk(t, "id"),
        sa.UniqueConstraint("config_id", "revision_number", name=op.f("uq_robotics_config_revisions_config_id")),
    )
    op.create_index(op.f("ix_robotics_config_revisions_config_id"), t, ["config_id"])

    t = "robotics_drafts"
    op.create_table(
        t,
        _id(nullable=False),
        _id("source_asset_id", nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        _id("current_revision_id", nullable=True),
        _id("confirmed_revision_id", nullable=True),
        _id("saved_config_id", nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("discarded_at", UTCDateTime(), nullable=True),
        _fk(t, "source_asset_id", "robotics_assets", "SET NULL"),
        _fk(t, "saved_config_id", "robotics_conversion_configs", "SET NULL"),
        _pk(t, "id"),
    )

    t = "robotics_draft_revisions"
    op.create_table(
        t,
        _id(nullable=False),
        _id("draft_id", nullable=False),
        sa.Column("revision_number", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(200), nullable=True),
        _id("saved_config_id", nullable=True),
        _id("source_asset_id", nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        _json("metadata_json"),
        _json("inspection_request", True),
        _json("inspection", True),
        _json("draft_request", True),
        _json("draft_result", True),
        _json("preview_request", True),
        _json("preview", True),
        _json("spec_document", True),
        sa.Column("spec_document_version", sa.Integer(), nullable=False),
        sa.Column("invalid_reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _fk(t, "draft_id", "robotics_drafts", "CASCADE"),
        _fk(t, "saved_config_id", "robotics_conversion_configs", "SET NULL"),
        _pk(t, "id"),
    )
    op.create_index(op.f("ix_robotics_draft_revisions_draft_id"), t, ["draft_id"])
    op.create_index(op.f("ix_robotics_draft_revisions_saved_config_id"), t, ["saved_config_id"])

    t = "robotics_conversion_runs"
    op.create_table(
        t,
        _id(nullable=False),
        _id("job_id", nullable=True),
        _json("asset_ids"),
        _json("asset_paths"),
        _id("saved_config_id", nullable=True),
        _id("saved_config_revision_id", nullable=True),
        _json("config"),
        sa.Column("output_dir", sa.Text(), nullable=False),
        _json("output_paths"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _fk(t, "job_id", "jobs", "SET NULL"),
        _pk(t, "id"),
    )
    op.create_index(op.f("ix_robotics_conversion_runs_job_id"), t, ["job_id"])
    op.create_index(op.f("ix_robotics_conversion_runs_created_at"), t, ["created_at"])

    t = "robotics_outputs"
    op.create_table(
        t,
        _id(nullable=False),
        _id("conversion_run_id", nullable=True),
        _id("source_asset_id", nullable=True),
        sa.Column("source_asset_path", sa.Text(), nullable=True),
        _id("saved_config_id", nullable=True),
        sa.Column("output_path", sa.Text(), nullable=False),
        sa.Column("relative_path", sa.Text(), nullable=False),
        sa.Column("file_name", sa.String(512), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("media_type", sa.String(128), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("availability_status", sa.String(16), nullable=False),
        sa.Column("manifest_available", sa.Boolean(), nullable=False),
        sa.Column("report_available", sa.Boolean(), nullable=False),
        _json("metadata_json"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _fk(t, "conversion_run_id", "robotics_conversion_runs", "SET NULL"),
        _pk(t, "id"),
        sa.UniqueConstraint("output_path", name=op.f("uq_robotics_outputs_output_path")),
    )
    op.create_index("ix_robotics_outputs_created", t, ["created_at", "id"])
    for col in ("conversion_run_id", "source_asset_id", "format", "role", "availability_status"):
        op.create_index(op.f(f"ix_robotics_outputs_{col}"), t, [col])


def downgrade() -> None:
    for table in (
        "robotics_outputs",
        "robotics_conversion_runs",
        "robotics_draft_revisions",
        "robotics_drafts",
        "robotics_config_revisions",
        "robotics_conversion_configs",
        "robotics_job_assets",
        "robotics_asset_tags",
        "robotics_tags",
        "robotics_asset_metadata",
        "robotics_assets",
    ):
        op.drop_table(table)
