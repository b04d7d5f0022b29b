"""Genai knowledge bases: KBs, schema profiles, sources, documents, chunks with vectors, sync runs,
and the keyword index over chunks (SQLite FTS5 table kept by triggers; PostgreSQL a generated
tsvector column with a GIN index).

Revision ID: 0015_genai_context
Revises: 0014_genai_core
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kiln.core.db import JSONType, UTCDateTime

revision = "0015_genai_context"
down_revision = "0014_genai_core"
branch_labels = None
depends_on = None


def _uuid(name: str, *args: object, **kwargs: object) -> sa.Column:
    return sa.Column(name, sa.String(36), *args, **kwargs)


def _times() -> list[sa.Column]:
    return [
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    ]


def _kb_fk() -> sa.Column:
    return _uuid(
        "knowledge_base_id", sa.ForeignKey("genai_context_knowledge_bases.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "genai_context_schema_profiles",
        _uuid("id", primary_key=True),
        sa.Column("slug", sa.String(120), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("provider_key", sa.String(80), nullable=False),
        sa.Column("is_system", sa.Boolean(), nullable=False),
        sa.Column("schema_json", JSONType, nullable=False),
        *_times(),
        sa.UniqueConstraint("provider_key", "slug"),
    )
    op.create_table(
        "genai_context_knowledge_bases",
        _uuid("id", primary_key=True),
        sa.Column("slug", sa.String(120), nullable=False, unique=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("index_name", sa.String(160), nullable=False, unique=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("backing_provider_instance_id", sa.String(64), nullable=True),
        sa.Column("backing_provider_key", sa.String(80), nullable=False),
        sa.Column("lifecycle_state", sa.String(16), nullable=False),
        sa.Column("sync_status", sa.String(16), nullable=False),
        sa.Column("schema_json", JSONType, nullable=False),
        sa.Column("vectorization_mode", sa.String(32), nullable=False),
        sa.Column("embedding_provider_instance_id", sa.String(64), nullable=True),
        sa.Column("embedding_resource_id", sa.String(255), nullable=True),
        sa.Column("embedding_model", sa.String(255), nullable=True),
        sa.Column("embedding_dimension", sa.Integer(), nullable=True),
        sa.Column("vectorization_json", JSONType, nullable=False),
        sa.Column("chunking_strategy", sa.String(32), nullable=False),
        sa.Column("chunking_config_json", JSONType, nullable=False),
        sa.Column("document_count", sa.Integer(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("sync_owner", sa.String(64), nullable=True),
        sa.Column("sync_heartbeat_at", UTCDateTime(), nullable=True),
        sa.Column("last_sync_at", UTCDateTime(), nullable=True),
        sa.Column("last_sync_error", sa.Text(), nullable=True),
        sa.Column("last_sync_summary", sa.Text(), nullable=True),
        _uuid("created_by_user_id", nullable=True),
        _uuid("updated_by_user_id", nullable=True),
        *_times(),
    )
    op.create_table(
        "genai_context_sources",
        _uuid("id", primary_key=True),
        _kb_fk(),
        sa.Column("source_type", sa.String(32), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("relative_path", sa.String(1024), nullable=False),
        sa.Column("include_globs", JSONType, nullable=False),
        sa.Column("exclude_globs", JSONType, nullable=False),
        sa.Column("metadata_json", JSONType, nullable=False),
        sa.Column("lifecycle_state", sa.String(16), nullable=False),
        sa.Column("last_sync_status", sa.String(16), nullable=False),
        sa.Column("last_sync_at", UTCDateTime(), nullable=True),
        sa.Column("last_sync_error", sa.Text(), nullable=True),
        *_times(),
        sa.UniqueConstraint("knowledge_base_id", "relative_path"),
    )
    op.create_table(
        "genai_context_documents",
        _uuid("id", primary_key=True),
        _kb_fk(),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("source_type", sa.String(32), nullable=False),
        sa.Column("source_name", sa.String(500), nullable=True),
        sa.Column("uri", sa.String(2048), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("page_texts", JSONType, nullable=True),
        sa.Column("metadata_json", JSONType, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("ingest_status", sa.String(16), nullable=False),
        sa.Column("ingest_error", sa.Text(), nullable=True),
        sa.Column("indexed_hash", sa.String(64), nullable=True),
        _uuid("source_id", sa.ForeignKey("genai_context_sources.id", ondelete="SET NULL"), nullable=True),
        sa.Column("source_path", sa.String(1024), nullable=True),
        sa.Column("source_document_key", sa.String(1100), nullable=True),
        sa.Column("managed_by_source", sa.Boolean(), nullable=False),
        *_times(),
    )
    op.create_index(
        "ix_genai_context_documents_kb_created", "genai_context_documents", ["knowledge_base_id", "created_at"]
    )
    op.create_index(
        "ix_genai_context_documents_source_key", "genai_context_documents", ["source_id", "source_document_key"]
    )
    op.create_table(
        "genai_context_chunks",
        _uuid("id", primary_key=True),
        _kb_fk(),
        _uuid("document_id", sa.ForeignKey("genai_context_documents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_hash", sa.String(64), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.Column("page_number", sa.Integer(), nullable=True),
        sa.Column("vector", sa.LargeBinary(), nullable=True),
        sa.Column("fts_rowid", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_genai_context_chunks_kb_gen", "genai_context_chunks", ["knowledge_base_id", "generation"])
    op.create_index(
        "ix_genai_context_chunks_document", "genai_context_chunks", ["document_id", "generation", "chunk_index"]
    )
    op.create_index("ix_genai_context_chunks_fts_rowid", "genai_context_chunks", ["fts_rowid"])
    op.create_table(
        "genai_context_sync_runs",
        _uuid("id", primary_key=True),
        _kb_fk(),
        _uuid("source_id", nullable=True),
        sa.Column("operation_type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _uuid("job_id", nullable=True),
        sa.Column("payload", JSONType, nullable=False),
        *[
            sa.Column(name, sa.Integer(), nullable=False)
            for name in (
                "total_file_count",
                "processed_file_count",
                "total_document_count",
                "processed_document_count",
                "scanned_file_count",
                "changed_file_count",
                "deleted_file_count",
                "created_document_count",
                "updated_document_count",
                "deleted_document_count",
            )
        ],
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("current_step", sa.String(64), nullable=True),
        sa.Column("current_path", sa.String(1024), nullable=True),
        sa.Column("error_summary", sa.Text(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        _uuid("created_by_user_id", nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index(
        "ix_genai_context_sync_runs_kb_status", "genai_context_sync_runs", ["knowledge_base_id", "status", "created_at"]
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE genai_context_chunks ADD COLUMN tsv tsvector "
            "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED"
        )
        op.execute("CREATE INDEX ix_genai_context_chunks_tsv ON genai_context_chunks USING gin (tsv)")
    else:
        # The chunk's knowledge base is an indexed column so a MATCH is scoped to one KB inside the index.
        op.execute("CREATE VIRTUAL TABLE genai_context_chunks_fts USING fts5(text, kb, tokenize = 'porter unicode61')")
        op.execute("""
            CREATE TRIGGER genai_context_chunks_fts_ai AFTER INSERT ON genai_context_chunks BEGIN
              INSERT INTO genai_context_chunks_fts (text, kb) VALUES (new.text, replace(new.knowledge_base_id, '-', ''));
              UPDATE genai_context_chunks SET fts_rowid = last_insert_rowid() WHERE id = new.id;
            END""")
        op.execute("""
            CREATE TRIGGER genai_context_chunks_fts_ad AFTER DELETE ON genai_context_chunks BEGIN
              DELETE FROM genai_context_chunks_fts WHERE rowid = old.fts_rowid;
            END""")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TRIGGER IF EXISTS genai_context_chunks_fts_ad")
        op.execute("DROP TRIGGER IF EXISTS genai_context_chunks_fts_ai")
        op.execute("DROP TABLE IF EXISTS genai_context_chunks_fts")
    for table in (
        "genai_context_sync_runs",
        "genai_context_chunks",
        "genai_context_documents",
        "genai_context_sources",
        "genai_context_knowledge_bases",
        "genai_context_schema_profiles",
    ):
        op.drop_table(table)
