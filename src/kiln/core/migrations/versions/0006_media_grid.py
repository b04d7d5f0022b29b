"""Media: pre-aggregated map grid, map indexes with status, one file per user.

* ``media_grid_members`` / ``media_grid_cells`` / ``media_grid_labels`` / ``media_grid_versions``
  (see ``kiln.apps.media.grid``), backfilled here from the existing READY trash media.
* ``ix_media_items_map_trash`` becomes ``ix_media_items_map_lat`` (user_id, has_trash, status, lat,
  lng, confidence, id) — the row-level statistics filter on READY too — plus its twin
  ``ix_media_items_map_lng`` (lng first) for the east/west border strips of a bbox.
* ``uq_media_items_user_sha256``: unique (user_id, sha256) where sha256 is not null, replacing
  ``ix_media_items_user_sha256``. Duplicates that raced in before (same user, same bytes) keep
  their rows, but only the oldest keeps its checksum.

Revision ID: 0006_media_grid
Revises: 0005_media_indexes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kiln.core.db import JSONType

revision = "0006_media_grid"
down_revision = "0005_media_indexes"
branch_labels = None
depends_on = None


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"),
                                   ondelete="CASCADE")


def upgrade() -> None:
    from kiln.apps.media.grid import backfill_sql

    op.create_table(
        "media_grid_members",
        sa.Column("media_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("lat_idx", sa.BigInteger(), nullable=False),
        sa.Column("lng_idx", sa.BigInteger(), nullable=False),
        sa.Column("confidence", sa.BigInteger(), nullable=False),
        sa.Column("labels", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("media_id", name=op.f("pk_media_grid_members")),
        _user_fk("media_grid_members"),
    )
    op.create_index("ix_media_grid_members_user_id", "media_grid_members", ["user_id"])
    op.create_table(
        "media_grid_cells",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("lat_idx", sa.BigInteger(), nullable=False),
        sa.Column("lng_idx", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("confidence_sum", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "level", "lat_idx", "lng_idx", name=op.f("pk_media_grid_cells")),
        _user_fk("media_grid_cells"),
    )
    op.create_table(
        "media_grid_labels",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("lat_idx", sa.BigInteger(), nullable=False),
        sa.Column("lng_idx", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "level", "lat_idx", "lng_idx", "label",
                                name=op.f("pk_media_grid_labels")),
        _user_fk("media_grid_labels"),
    )
    op.create_table(
        "media_grid_versions",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_media_grid_versions")),
        _user_fk("media_grid_versions"),
    )
    op.drop_index("ix_media_items_map_trash", table_name="media_items")
    op.create_index("ix_media_items_map_lat", "media_items",
                    ["user_id", "has_trash", "status", "lat", "lng", "confidence", "id"])
    op.create_index("ix_media_items_map_lng", "media_items",
                    ["user_id", "has_trash", "status", "lng", "lat", "confidence", "id"])
    op.execute("""UPDATE media_items SET sha256 = NULL WHERE sha256 IS NOT NULL AND EXISTS (
        SELECT 1 FROM media_items o WHERE o.user_id = media_items.user_id AND o.sha256 = media_items.sha256
        AND (o.created_at < media_items.created_at
             OR (o.created_at = media_items.created_at AND o.id < media_items.id)))""")
    op.drop_index("ix_media_items_user_sha256", table_name="media_items")
    where = sa.text("sha256 IS NOT NULL")
    op.create_index("uq_media_items_user_sha256", "media_items", ["user_id", "sha256"], unique=True,
                    sqlite_where=where, postgresql_where=where)
    for sql in backfill_sql(op.get_bind().dialect.name):
        op.execute(sql)


def downgrade() -> None:
    op.drop_index("uq_media_items_user_sha256", table_name="media_items")
    op.create_index("ix_media_items_user_sha256", "media_items", ["user_id", "sha256"])
    op.drop_index("ix_media_items_map_lng", table_name="media_items")
    op.drop_index("ix_media_items_map_lat", table_name="media_items")
    op.create_index("ix_media_items_map_trash", "media_items",
                    ["user_id", "has_trash", "lat", "lng", "confidence", "id"])
    for table in ("media_grid_versions", "media_grid_labels", "media_grid_cells", "media_grid_members"):
        op.drop_table(table)
