"""Media: lng-first covering indexes on the map grid.

The primary keys of ``media_grid_cells`` / ``media_grid_labels`` lead with lat_idx, so a band
of cells along a bbox's west or east edge (few columns, many rows) scanned every level-0 row of
the user. ``(user_id, level, lng_idx, lat_idx, ...)`` makes it one range scan, read from the
index alone (count and confidence sum included).

Revision ID: 0007_media_grid_lng
Revises: 0006_media_grid
"""

from __future__ import annotations

from alembic import op

revision = "0007_media_grid_lng"
down_revision = "0006_media_grid"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_media_grid_cells_lng",
        "media_grid_cells",
        ["user_id", "level", "lng_idx", "lat_idx", "count", "confidence_sum"],
    )
    op.create_index(
        "ix_media_grid_labels_lng", "media_grid_labels", ["user_id", "level", "lng_idx", "lat_idx", "label", "count"]
    )


def downgrade() -> None:
    op.drop_index("ix_media_grid_labels_lng", table_name="media_grid_labels")
    op.drop_index("ix_media_grid_cells_lng", table_name="media_grid_cells")
