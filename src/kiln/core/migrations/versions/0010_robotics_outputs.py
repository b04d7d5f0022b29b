"""Robotics: remember each run folder's mtime when its output rows last matched it.

Listing outputs and the dashboard then scan only folders whose mtime changed (a file added,
removed or renamed) instead of every run folder on every request.

Revision ID: 0010_robotics_outputs
Revises: 0008_engine_token_scopes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_robotics_outputs"
down_revision = "0008_engine_token_scopes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("robotics_conversion_runs", sa.Column("outputs_mtime_ns", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("robotics_conversion_runs", "outputs_mtime_ns")
