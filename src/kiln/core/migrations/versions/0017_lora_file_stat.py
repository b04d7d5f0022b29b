"""LoRA directory import at library scale.

* `lora_adapters.file_size` / `file_mtime_ns`: each adapter file's exact size and mtime as last
  read, so a directory scan registers files at once and hashes them in a follow-up job
  (sha256 NULL until then), and a re-scan re-hashes only the files that changed.
* `lora_duplicate_files`: the copies the hash job found and did not keep, so a re-scan skips
  them without hashing.
* SQLite: the search-index triggers of 0012 stand aside while `lora_search_deferred` holds a
  row. A bulk import sets it inside its own transaction (SQLite has one writer at a time, so
  no other insert can see it), writes its rows, fills the index with one INSERT ... SELECT and
  clears it: a trigger firing per row cost ~4x more than the set-based fill.

Revision ID: 0017_lora_file_stat
Revises: 0016_genai_chat
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_lora_file_stat"
down_revision = "0016_genai_chat"
branch_labels = None
depends_on = None

INSERT_TRIGGER = """CREATE TRIGGER lora_adapters_fts_ai AFTER INSERT ON lora_adapters{when} BEGIN
        INSERT INTO lora_search (adapter_id) VALUES (new.id);
        INSERT INTO lora_adapters_fts (rowid, search_text) VALUES (last_insert_rowid(), new.search_text);
    END"""
UPDATE_TRIGGER = """CREATE TRIGGER lora_adapters_fts_au AFTER UPDATE OF search_text ON lora_adapters{when} BEGIN
        UPDATE lora_adapters_fts SET search_text = new.search_text
        WHERE rowid = (SELECT id FROM lora_search WHERE adapter_id = new.id);
    END"""
UNLESS_DEFERRED = " WHEN NOT EXISTS (SELECT 1 FROM lora_search_deferred)"


def _triggers(when: str) -> None:
    for name, statement in (("lora_adapters_fts_ai", INSERT_TRIGGER), ("lora_adapters_fts_au", UPDATE_TRIGGER)):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute(statement.format(when=when))


def upgrade() -> None:
    op.add_column("lora_adapters", sa.Column("file_size", sa.BigInteger(), nullable=True))
    op.add_column("lora_adapters", sa.Column("file_mtime_ns", sa.BigInteger(), nullable=True))
    t = "lora_duplicate_files"
    op.create_table(
        t,
        sa.Column("file_path", sa.String(4096), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("file_mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("duplicate_of", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("file_path", name=op.f(f"pk_{t}")),
        sa.ForeignKeyConstraint(
            ["duplicate_of"],
            ["lora_adapters.id"],
            name=op.f(f"fk_{t}_duplicate_of_lora_adapters"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f(f"ix_{t}_duplicate_of"), t, ["duplicate_of"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE TABLE lora_search_deferred (deferred INTEGER NOT NULL)")
        _triggers(UNLESS_DEFERRED)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _triggers("")
        op.execute("DROP TABLE lora_search_deferred")
    op.drop_index(op.f("ix_lora_duplicate_files_duplicate_of"), table_name="lora_duplicate_files")
    op.drop_table("lora_duplicate_files")
    # Plain DROP COLUMN (SQLite >= 3.35, PostgreSQL): a batch copy of the table would lose the
    # SQLite search triggers of 0012.
    for name in ("file_mtime_ns", "file_size"):
        op.execute(f"ALTER TABLE lora_adapters DROP COLUMN {name}")
