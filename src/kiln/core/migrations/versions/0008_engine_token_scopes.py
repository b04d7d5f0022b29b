"""Engine: API tokens limited to some surfaces (`kiln user token --scope robotics,lora`).

Revision ID: 0008_engine_token_scopes
Revises: 0007_media_grid_lng
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_engine_token_scopes"
down_revision = "0007_media_grid_lng"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("scopes", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("scopes")
