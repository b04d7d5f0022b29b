"""The LoRA surface's tables (all prefixed `lora_`).

Generations are the engine's `jobs` rows (kind `lora.generate`); their images are blobs.
`lora_adapter_tags` holds each adapter's tags lower-cased, so tag filters and the tag list
are plain indexed SQL on both databases. `search_text` is the lower-cased text a search
matches (name, alias, file stem, tags, trigger words). An adapter with a `file_size` and no
`primary_file_sha256` is waiting for its hash (see `library/scan.py` and `library/hashing.py`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from kiln.core.db import Base, JSONType, UTCDateTime, UUIDStr, new_id, utcnow


class Adapter(Base):
    __tablename__ = "lora_adapters"
    __table_args__ = (
        Index("ux_lora_adapters_name_version", "name", "version_key", unique=True),
        Index("ix_lora_adapters_name_lower", func.lower("name"), "id"),
        Index("ix_lora_adapters_created", "created_at", "id"),
        Index("ix_lora_adapters_updated", "updated_at", "id"),
        Index("ix_lora_adapters_size", "primary_file_size_kb", "id"),
        Index("ix_lora_adapters_active_ordinal", "active", "ordinal"),
    )

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(512))
    version: Mapped[str | None] = mapped_column(String(255), nullable=True)
    version_key: Mapped[str] = mapped_column(String(255), default="")
    canonical_version_name: Mapped[str | None] = mapped_column(String(512), nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    author_username: Mapped[str | None] = mapped_column(String(255), nullable=True)
    visibility: Mapped[str] = mapped_column(String(32), default="Public")
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    trained_words: Mapped[list[str]] = mapped_column(JSONType, default=list)
    triggers: Mapped[list[str]] = mapped_column(JSONType, default=list)
    activation_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    archetype: Mapped[str | None] = mapped_column(String(255), nullable=True)
    archetype_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    sd_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    nsfw_level: Mapped[int] = mapped_column(Integer, default=0)
    supports_generation: Mapped[bool] = mapped_column(Boolean, default=False)
    stats: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    extra: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # file
    file_path: Mapped[str] = mapped_column(Text, index=True)
    file_stem: Mapped[str | None] = mapped_column(String(512), nullable=True, index=True)
    alias: Mapped[str | None] = mapped_column(String(512), nullable=True)
    primary_file_name: Mapped[str | None] = mapped_column(String(512), nullable=True)
    primary_file_size_kb: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    primary_file_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    primary_file_download_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    primary_file_local_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The file's exact size and mtime when it was last read. A scan registers files without
    # their sha256 (NULL while a `lora.hash` job has it to do) and re-hashes a registered file
    # only when these changed.
    file_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    file_mtime_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # read from the safetensors header
    base_model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    network_module: Mapped[str | None] = mapped_column(String(128), nullable=True)
    network_dim: Mapped[int | None] = mapped_column(Integer, nullable=True)
    network_alpha: Mapped[float | None] = mapped_column(Float, nullable=True)
    model_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    trigger_candidates: Mapped[list[str]] = mapped_column(JSONType, default=list)
    header_metadata: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    preview_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    # composition
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    ordinal: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # ingestion
    json_file_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    json_file_mtime: Mapped[str | None] = mapped_column(String(64), nullable=True)
    json_file_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_ingested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    search_text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AdapterTag(Base):
    __tablename__ = "lora_adapter_tags"

    adapter_id: Mapped[str] = mapped_column(
        UUIDStr(), ForeignKey("lora_adapters.id", ondelete="CASCADE"), primary_key=True
    )
    tag_norm: Mapped[str] = mapped_column(String(255), primary_key=True)
    tag: Mapped[str] = mapped_column(String(255))
    # the adapter's lower-cased name, so a tag's adapters come out of an index in name order
    name_key: Mapped[str] = mapped_column(String(512))

    __table_args__ = (
        Index("ix_lora_adapter_tags_norm", "tag_norm", "adapter_id"),
        Index("ix_lora_adapter_tags_by_name", "tag_norm", "name_key", "adapter_id"),
    )


class DuplicateFile(Base):
    """A scanned file found to be a byte-for-byte copy of an adapter's file (same sha256), so it
    was not kept as an adapter. A re-scan skips it while its size and mtime are unchanged and
    the adapter still has that hash, instead of registering and hashing it again."""

    __tablename__ = "lora_duplicate_files"

    file_path: Mapped[str] = mapped_column(String(4096), primary_key=True)
    file_size: Mapped[int] = mapped_column(BigInteger)
    file_mtime_ns: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    duplicate_of: Mapped[str] = mapped_column(UUIDStr(), ForeignKey("lora_adapters.id", ondelete="CASCADE"), index=True)


class GenerationResult(Base):
    """A succeeded `lora.generate` job as the history screen filters, sorts and sums it.

    Derived from the job's JSON (`payload`: prompt, negative prompt, size; `result`: rating,
    favourite, bytes) by database triggers on `jobs` (migration 0018), in the statement that
    writes the job: the engine's finish, the rating and favourite routes, a delete (cascade).
    Nothing in Kiln writes these rows itself; the job stays the source of truth.
    """

    __tablename__ = "lora_generation_results"

    job_id: Mapped[str] = mapped_column(UUIDStr(), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # lower(prompt), its first 200 characters: the `prompt` sort
    prompt_key: Mapped[str] = mapped_column(String(800))
    # lower(prompt + "\n" + negative prompt): the search words
    search_text: Mapped[str] = mapped_column(Text)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # the rating with unrated as 0: the `rating` sort
    sort_rating: Mapped[int] = mapped_column(Integer)
    is_favorite: Mapped[bool] = mapped_column(Boolean)
    bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


Index("ix_lora_generation_results_created", GenerationResult.created_at, GenerationResult.job_id)
Index(
    "ix_lora_generation_results_rating",
    GenerationResult.sort_rating,
    GenerationResult.created_at,
    GenerationResult.job_id,
)
Index(
    "ix_lora_generation_results_prompt",
    GenerationResult.prompt_key,
    GenerationResult.created_at.desc(),
    GenerationResult.job_id.desc(),
)
Index("ix_lora_generation_results_size", GenerationResult.width, GenerationResult.height, GenerationResult.created_at)


class Embedding(Base):
    """An adapter's sentence embedding, float32 little-endian bytes (never a pickle)."""

    __tablename__ = "lora_embeddings"

    adapter_id: Mapped[str] = mapped_column(
        UUIDStr(), ForeignKey("lora_adapters.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(128))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    source_hash: Mapped[str] = mapped_column(String(64))
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Feedback(Base):
    __tablename__ = "lora_feedback"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    adapter_id: Mapped[str] = mapped_column(UUIDStr(), ForeignKey("lora_adapters.id", ondelete="CASCADE"), index=True)
    feedback_type: Mapped[str] = mapped_column(String(32))
    context: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Backup(Base):
    __tablename__ = "lora_backups"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    backup_type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    blob_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    job_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
