"""Tables of knowledge bases: KBs, schema profiles, documents, chunks (with their vectors),
local-directory sources and sync runs. The database is the source of truth: the vector stores
hold copies that can be rebuilt from `genai_context_chunks`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kiln.core.db import Base, JSONType, UTCDateTime, UUIDStr, new_id, utcnow


class SchemaProfile(Base):
    __tablename__ = "genai_context_schema_profiles"
    __table_args__ = (UniqueConstraint("provider_key", "slug"),)

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(120))
    display_name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    provider_key: Mapped[str] = mapped_column(String(80))
    is_system: Mapped[bool] = mapped_column(Boolean, default=False)
    schema_json: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class KnowledgeBase(Base):
    __tablename__ = "genai_context_knowledge_bases"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    index_name: Mapped[str] = mapped_column(String(160), unique=True)
    generation: Mapped[int] = mapped_column(Integer, default=1)  # the live chunk generation (blue/green)
    backing_provider_instance_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    backing_provider_key: Mapped[str] = mapped_column(String(80), default="kiln_embedded_vectors")
    lifecycle_state: Mapped[str] = mapped_column(String(16), default="active")
    sync_status: Mapped[str] = mapped_column(String(16), default="ready")
    schema_json: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    vectorization_mode: Mapped[str] = mapped_column(String(32), default="vanessa_embeddings")
    embedding_provider_instance_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    embedding_resource_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    embedding_model: Mapped[str | None] = mapped_column(String(255), nullable=True)  # pinned model id
    embedding_dimension: Mapped[int | None] = mapped_column(Integer, nullable=True)  # pinned dimension
    vectorization_json: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    chunking_strategy: Mapped[str] = mapped_column(String(32), default="fixed_length")
    chunking_config_json: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    document_count: Mapped[int] = mapped_column(Integer, default=0)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    sync_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)  # per-KB serialization
    sync_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_sync_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_sync_summary: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by_user_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True)
    updated_by_user_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class KnowledgeSource(Base):
    __tablename__ = "genai_context_sources"
    __table_args__ = (UniqueConstraint("knowledge_base_id", "relative_path"),)

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    knowledge_base_id: Mapped[str] = mapped_column(
        UUIDStr(), ForeignKey("genai_context_knowledge_bases.id", ondelete="CASCADE")
    )
    source_type: Mapped[str] = mapped_column(String(32), default="local_directory")
    display_name: Mapped[str] = mapped_column(String(200))
    relative_path: Mapped[str] = mapped_column(String(1024))
    include_globs: Mapped[list[str]] = mapped_column(JSONType, default=list)
    exclude_globs: Mapped[list[str]] = mapped_column(JSONType, default=list)
    metadata_json: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    lifecycle_state: Mapped[str] = mapped_column(String(16), default="active")
    last_sync_status: Mapped[str] = mapped_column(String(16), default="idle")
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_sync_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Document(Base):
    __tablename__ = "genai_context_documents"
    __table_args__ = (
        Index("ix_genai_context_documents_kb_created", "knowledge_base_id", "created_at"),
        Index("ix_genai_context_documents_source_key", "source_id", "source_document_key"),
    )

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    knowledge_base_id: Mapped[str] = mapped_column(
        UUIDStr(), ForeignKey("genai_context_knowledge_bases.id", ondelete="CASCADE")
    )
    title: Mapped[str] = mapped_column(String(500))
    source_type: Mapped[str] = mapped_column(String(32), default="manual")
    source_name: Mapped[str | None] = mapped_column(String(500), nullable=True)
    uri: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    text: Mapped[str] = mapped_column(Text)
    page_texts: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType, nullable=True)
    metadata_json: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    content_hash: Mapped[str] = mapped_column(String(64))
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    ingest_status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | ready | error
    ingest_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    indexed_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)  # content_hash of live chunks
    source_id: Mapped[str | None] = mapped_column(
        UUIDStr(), ForeignKey("genai_context_sources.id", ondelete="SET NULL"), nullable=True
    )
    source_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    source_document_key: Mapped[str | None] = mapped_column(String(1100), nullable=True)
    managed_by_source: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Chunk(Base):
    """One embedded window of a document. `generation` lets a full resync build a new index
    beside the live one; `vector` is the float32 embedding (little-endian bytes)."""

    __tablename__ = "genai_context_chunks"
    __table_args__ = (
        Index("ix_genai_context_chunks_kb_gen", "knowledge_base_id", "generation"),
        Index("ix_genai_context_chunks_document", "document_id", "generation", "chunk_index"),
        Index("ix_genai_context_chunks_fts_rowid", "fts_rowid"),
    )

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    knowledge_base_id: Mapped[str] = mapped_column(
        UUIDStr(), ForeignKey("genai_context_knowledge_bases.id", ondelete="CASCADE")
    )
    document_id: Mapped[str] = mapped_column(UUIDStr(), ForeignKey("genai_context_documents.id", ondelete="CASCADE"))
    generation: Mapped[int] = mapped_column(Integer, default=1)
    chunk_index: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(64))
    token_count: Mapped[int] = mapped_column(Integer)
    page_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    vector: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    fts_rowid: Mapped[int | None] = mapped_column(Integer, nullable=True)  # SQLite: its FTS5 row (set by trigger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SyncRun(Base):
    __tablename__ = "genai_context_sync_runs"
    __table_args__ = (Index("ix_genai_context_sync_runs_kb_status", "knowledge_base_id", "status", "created_at"),)

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    knowledge_base_id: Mapped[str] = mapped_column(
        UUIDStr(), ForeignKey("genai_context_knowledge_bases.id", ondelete="CASCADE")
    )
    source_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True)
    operation_type: Mapped[str] = mapped_column(String(32))  # source_sync | knowledge_resync | document_ingest
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued | running | ready | error
    job_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    total_file_count: Mapped[int] = mapped_column(Integer, default=0)
    processed_file_count: Mapped[int] = mapped_column(Integer, default=0)
    total_document_count: Mapped[int] = mapped_column(Integer, default=0)
    processed_document_count: Mapped[int] = mapped_column(Integer, default=0)
    scanned_file_count: Mapped[int] = mapped_column(Integer, default=0)
    changed_file_count: Mapped[int] = mapped_column(Integer, default=0)
    deleted_file_count: Mapped[int] = mapped_column(Integer, default=0)
    created_document_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_document_count: Mapped[int] = mapped_column(Integer, default=0)
    deleted_document_count: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    current_step: Mapped[str | None] = mapped_column(String(64), nullable=True)
    current_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    error_summary: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_by_user_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
