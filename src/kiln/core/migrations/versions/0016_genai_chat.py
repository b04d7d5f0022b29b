"""Genai playgrounds and agents: playground sessions and messages, agent projects with their
versions, agent executions.

Revision ID: 0016_genai_chat
Revises: 0015_genai_context
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kiln.core.db import JSONType, UTCDateTime

revision = "0016_genai_chat"
down_revision = "0015_genai_context"
branch_labels = None
depends_on = None


def _times() -> list[sa.Column]:
    return [
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "genai_playground_sessions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner_user_id", sa.String(36), nullable=False, index=True),
        sa.Column("playground_kind", sa.String(16), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("title_source", sa.String(16), nullable=False),
        sa.Column("assistant_ref", sa.String(200), nullable=False),
        sa.Column("model_id", sa.String(200), nullable=True),
        sa.Column("knowledge_base_id", sa.String(36), nullable=True),
        sa.Column("retrieval_json", JSONType, nullable=False),
        sa.Column("message_count", sa.Integer, nullable=False),
        *_times(),
    )
    op.create_table(
        "genai_playground_messages",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey("genai_playground_sessions.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("message_index", sa.Integer, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("metadata_json", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("session_id", "message_index", name="uq_genai_playground_message"),
    )
    op.create_table(
        "genai_agent_projects",
        sa.Column("id", sa.String(120), primary_key=True),
        sa.Column("owner_user_id", sa.String(36), nullable=False, index=True),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("spec", JSONType, nullable=False),
        sa.Column("current_version", sa.Integer, nullable=False),
        sa.Column("validated_version", sa.Integer, nullable=True),
        sa.Column("published_agent_id", sa.String(200), nullable=True),
        *_times(),
    )
    op.create_table(
        "genai_agent_project_versions",
        sa.Column(
            "project_id", sa.String(120), sa.ForeignKey("genai_agent_projects.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("spec", JSONType, nullable=False),
        sa.Column("created_by_user_id", sa.String(36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "genai_agent_executions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("agent_id", sa.String(200), nullable=False),
        sa.Column("agent_version", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("runtime_profile", sa.String(16), nullable=False),
        sa.Column("requested_by_user_id", sa.String(36), nullable=False, index=True),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("input_json", JSONType, nullable=False),
        sa.Column("result_json", JSONType, nullable=False),
        *_times(),
    )


def downgrade() -> None:
    for table in (
        "genai_agent_executions",
        "genai_agent_project_versions",
        "genai_agent_projects",
        "genai_playground_messages",
        "genai_playground_sessions",
    ):
        op.drop_table(table)
