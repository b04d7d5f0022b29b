"""Media: covering indexes for the map (grid statistics, points, cache fingerprint).

* ``ix_media_items_map_trash`` (user_id, has_trash, lat, lng, confidence, id): the grid cells
  (count, mean confidence) and the items side of the dominant-label join are read from the
  index alone, never from the table.
* ``ix_media_items_user_lat_lng`` becomes (user_id, lat, lng, updated_at): the map points'
  bbox filter as before, and the stats cache's per-bbox fingerprint (count, max updated_at)
  from the index alone.
* ``ix_media_detections_media_label`` (media_id, label): the detections side of the join;
  it replaces ``ix_media_detections_media_id``, which it covers (and which SQLite's planner
  would otherwise pick, reading every detection row from the table).

Revision ID: 0005_media_indexes
Revises: 0004_media
"""

from __future__ import annotations

from alembic import op

revision = "0005_media_indexes"
down_revision = "0004_media"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_media_items_map_trash", "media_items", ["user_id", "has_trash", "lat", "lng", "confidence", "id"]
    )
    op.drop_index("ix_media_items_user_lat_lng", table_name="media_items")
    op.create_index("ix_media_items_user_lat_lng", "media_items", ["user_id", "lat", "lng", "updated_at"])
    op.create_index("ix_media_detections_media_label", "media_detections", ["media_id", "label"])
    op.drop_index("ix_media_detections_media_id", table_name="media_detections")


def downgrade() -> None:
    op.create_index("ix_media_detections_media_id", "media_detections", ["media_id"])
    op.drop_index("ix_media_detections_media_label", table_name="media_detections")
    op.drop_index("ix_media_items_user_lat_lng", table_name="media_items")
    op.create_index("ix_media_items_user_lat_lng", "media_items", ["user_id", "lat", "lng"])
    op.drop_index("ix_media_items_map_trash", table_name="media_items")
