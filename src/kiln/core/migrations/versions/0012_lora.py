"""LoRA: adapters, their tags, embeddings, recommendation feedback, backups.

Revision ID: 0012_lora
Revises: 0010_robotics_outputs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kiln.core.db import JSONType, UTCDateTime

revision = "0012_lora"
down_revision = "0010_robotics_outputs"
branch_labels = None
depends_on = None


def _pk(table: str, *cols: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*cols, name=op.f(f"pk_{table}"))


def _adapter_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["adapter_id"], ["lora_adapters.id"], name=op.f(f"fk_{table}_adapter_id_lora_adapters"), ondelete="CASCADE"
    )


def _str(name: str, length: int, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.String(length), nullable=nullable)


def _text(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.Text(), nullable=nullable)


def upgrade() -> None:
    t = "lora_adapters"
    op.create_table(
        t,
        _str("id", 36, False),
        _str("name", 512, False),
        _str("version", 255),
        _str("version_key", 255, False),
        _str("canonical_version_name", 512),
        _text("description"),
        _str("author_username", 255),
        _str("visibility", 32, False),
        sa.Column("published_at", UTCDateTime(), nullable=True),
        sa.Column("tags", JSONType, nullable=False),
        sa.Column("trained_words", JSONType, nullable=False),
        sa.Column("triggers", JSONType, nullable=False),
        _text("activation_text"),
        _str("archetype", 255),
        sa.Column("archetype_confidence", sa.Float(), nullable=True),
        _str("sd_version", 64),
        sa.Column("nsfw_level", sa.Integer(), nullable=False),
        sa.Column("supports_generation", sa.Boolean(), nullable=False),
        sa.Column("stats", JSONType, nullable=False),
        sa.Column("extra", JSONType, nullable=False),
        _text("file_path", False),
        _str("file_stem", 512),
        _str("alias", 512),
        _str("primary_file_name", 512),
        sa.Column("primary_file_size_kb", sa.BigInteger(), nullable=True),
        _str("primary_file_sha256", 64),
        _text("primary_file_download_url"),
        _text("primary_file_local_path"),
        _str("base_model", 128),
        _str("network_module", 128),
        sa.Column("network_dim", sa.Integer(), nullable=True),
        sa.Column("network_alpha", sa.Float(), nullable=True),
        _str("model_hash", 64),
        sa.Column("trigger_candidates", JSONType, nullable=False),
        sa.Column("header_metadata", JSONType, nullable=False),
        _text("preview_path"),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=True),
        _text("json_file_path"),
        _str("json_file_mtime", 64),
        sa.Column("json_file_size", sa.BigInteger(), nullable=True),
        sa.Column("last_ingested_at", UTCDateTime(), nullable=True),
        _text("search_text", False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _pk(t, "id"),
    )
    op.create_index("ux_lora_adapters_name_version", t, ["name", "version_key"], unique=True)
    op.create_index("ix_lora_adapters_name_lower", t, [sa.text("lower(name)"), "id"])
    op.create_index("ix_lora_adapters_created", t, ["created_at", "id"])
    op.create_index("ix_lora_adapters_updated", t, ["updated_at", "id"])
    op.create_index("ix_lora_adapters_size", t, ["primary_file_size_kb", "id"])
    op.create_index("ix_lora_adapters_active_ordinal", t, ["active", "ordinal"])
    for col in ("file_path", "file_stem", "primary_file_sha256"):
        op.create_index(op.f(f"ix_{t}_{col}"), t, [col])

    _search_index()

    t = "lora_adapter_tags"
    op.create_table(
        t,
        _str("adapter_id", 36, False),
        _str("tag_norm", 255, False),
        _str("tag", 255, False),
        _str("name_key", 512, False),
        _pk(t, "adapter_id", "tag_norm"),
        _adapter_fk(t),
    )
    op.create_index("ix_lora_adapter_tags_norm", t, ["tag_norm", "adapter_id"])
    op.create_index("ix_lora_adapter_tags_by_name", t, ["tag_norm", "name_key", "adapter_id"])

    t = "lora_embeddings"
    op.create_table(
        t,
        _str("adapter_id", 36, False),
        _str("model", 128, False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        _str("source_hash", 64, False),
        sa.Column("computed_at", UTCDateTime(), nullable=False),
        _pk(t, "adapter_id"),
        _adapter_fk(t),
    )

    t = "lora_feedback"
    op.create_table(
        t,
        _str("id", 36, False),
        _str("adapter_id", 36, False),
        _str("feedback_type", 32, False),
        _text("context"),
        _text("reason"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        _pk(t, "id"),
        _adapter_fk(t),
    )
    op.create_index(op.f("ix_lora_feedback_adapter_id"), t, ["adapter_id"])

    t = "lora_backups"
    op.create_table(
        t,
        _str("id", 64, False),
        _str("backup_type", 32, False),
        _str("status", 16, False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        _str("blob_key", 255),
        _str("job_id", 36),
        _text("error"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        _pk(t, "id"),
    )
    op.create_index(op.f("ix_lora_backups_created_at"), t, ["created_at"])


SQLITE_SEARCH = (
    # Trigram full-text index of search_text (substring search in the index, not a table scan).
    # Its rowids come from lora_search's INTEGER PRIMARY KEY, which VACUUM keeps.
    "CREATE TABLE lora_search (id INTEGER PRIMARY KEY, adapter_id VARCHAR(36) NOT NULL UNIQUE)",
    "CREATE VIRTUAL TABLE lora_adapters_fts USING fts5(search_text, tokenize='trigram')",
    """CREATE TRIGGER lora_adapters_fts_ai AFTER INSERT ON lora_adapters BEGIN
        INSERT INTO lora_search (adapter_id) VALUES (new.id);
        INSERT INTO lora_adapters_fts (rowid, search_text) VALUES (last_insert_rowid(), new.search_text);
    END""",
    """CREATE TRIGGER lora_adapters_fts_ad AFTER DELETE ON lora_adapters BEGIN
        DELETE FROM lora_adapters_fts WHERE rowid = (SELECT id FROM lora_search WHERE adapter_id = old.id);
        DELETE FROM lora_search WHERE adapter_id = old.id;
    END""",
    """CREATE TRIGGER lora_adapters_fts_au AFTER UPDATE OF search_text ON lora_adapters BEGIN
        UPDATE lora_adapters_fts SET search_text = new.search_text
        WHERE rowid = (SELECT id FROM lora_search WHERE adapter_id = new.id);
    END""",
)


def _search_index() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for statement in SQLITE_SEARCH:
            op.execute(statement)
    elif bind.dialect.name == "postgresql":
        # pg_trgm lets LIKE '%term%' use a GIN index; without the privilege to create the
        # extension, search still works (a sequential scan).
        with bind.begin_nested() as savepoint:
            try:
                bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            except sa.exc.DBAPIError:
                savepoint.rollback()
                return
        op.execute("CREATE INDEX ix_lora_adapters_search_trgm ON lora_adapters USING gin (search_text gin_trgm_ops)")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for name in ("lora_adapters_fts_ai", "lora_adapters_fts_ad", "lora_adapters_fts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS lora_adapters_fts")
        op.execute("DROP TABLE IF EXISTS lora_search")
    for t in ("lora_backups", "lora_feedback", "lora_embeddings", "lora_adapter_tags", "lora_adapters"):
        op.drop_table(t)
