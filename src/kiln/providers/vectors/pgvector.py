"""PostgreSQL with the pgvector extension (asyncpg): one table per index, its `vector(d)` column
fixed to the index's real dimension, an HNSW index with cosine distance (`vector_cosine_ops`),
a `document_id` column for batch deletes by document and a JSONB payload (GIN-indexed) for
exact-match filters. A small catalog table maps index names to tables and dimensions.

Vectors travel in pgvector's binary format (no float-to-text round trip). Queries order by
cosine distance with the HNSW index (`hnsw.ef_search` raised above pgvector's default of 40 for
recall; `hnsw.iterative_scan = strict_order` so a filtered query keeps scanning until it has
`top_k` matches instead of answering fewer). Scores are `1 − cosine distance`.

One store, with one connection pool, per DSN and password per process (`shared_store`); the pool
is rebuilt if it was made on another event loop, and `close_pools` closes them all at shutdown.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kiln.providers.vectors import Filters, VectorHit, VectorStoreError, check_dimension, check_index_name

CATALOG = "kiln_vector_indexes"
EF_SEARCH = 100
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
BATCH = 500
_HEADER = struct.Struct(">HH")


def table_name(index: str) -> str:
    """The table of an index: `kv_<name>` lower-cased, shortened with a hash past PostgreSQL's
    63-byte identifiers (index names differ in case and length; tables must not collide)."""
    check_index_name(index)
    base = "kv_" + index.lower().replace("-", "_")
    if base == "kv_" + index and len(base) <= 60:
        return base
    return f"{base[:44]}_{hashlib.sha1(index.encode()).hexdigest()[:12]}"


def encode_vector(value: Any) -> bytes:
    array = np.asarray(value, dtype=">f4").ravel()
    return _HEADER.pack(len(array), 0) + array.tobytes()


def decode_vector(data: bytes) -> np.ndarray:
    dimension, _ = _HEADER.unpack_from(data)
    return np.frombuffer(data, dtype=">f4", count=dimension, offset=_HEADER.size).astype(np.float32)


def _error(exc: BaseException) -> VectorStoreError:
    import asyncpg

    if isinstance(exc, VectorStoreError):
        return exc
    if isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.InterfaceError
        | asyncpg.CannotConnectNowError
        | asyncpg.InvalidAuthorizationSpecificationError
        | asyncpg.InvalidPasswordError,
    ):
        name = type(exc).__name__
        return VectorStoreError("vector_store_unavailable", f"pgvector: cannot reach the database ({name})")
    if isinstance(exc, asyncpg.UndefinedTableError):
        return VectorStoreError("vector_index_not_found", "pgvector: the index's table does not exist")
    return VectorStoreError("vector_store_error", f"pgvector: {type(exc).__name__}: {str(exc)[:200]}")


async def _lock_index(conn: Any, name: str) -> None:
    """In a transaction: the catalog exists, and this index is locked until it ends (one creator or
    dropper at a time: two syncs of one KB, a proof call during a sync)."""
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {CATALOG} (name text PRIMARY KEY, "
        "table_name text NOT NULL UNIQUE, dimension integer NOT NULL)"
    )
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", name)


class PgVectorStore:
    kind = "pgvector"

    def __init__(
        self,
        dsn: str,
        *,
        password: str | None = None,
        ef_search: int = EF_SEARCH,
        max_connections: int = 4,
        connect_timeout: float = 5.0,
    ):
        self.dsn = dsn
        self._password = password
        self.ef_search = ef_search
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self._pool: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._dimensions: dict[str, tuple[str, int]] = {}

    # -- connections ----------------------------------------------------------------------

    async def _prepare(self, conn: Any) -> None:
        """Per connection: the vector codec and the search settings."""
        schema = await conn.fetchval(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'vector'"
        )
        await conn.set_type_codec(
            "vector", schema=schema, encoder=encode_vector, decoder=decode_vector, format="binary"
        )
        await conn.execute(f"SET hnsw.ef_search = {int(self.ef_search)}; SET hnsw.iterative_scan = strict_order")

    async def _get_pool(self) -> Any:
        import asyncpg

        loop = asyncio.get_running_loop()
        if self._pool is not None and self._loop is loop:
            return self._pool
        if self._lock is None or self._loop is not loop:
            self._lock = asyncio.Lock()
            if self._pool is not None:  # made on a loop that is gone (tests, a restarted worker)
                self._pool.terminate()
                self._pool = None
            self._loop = loop
        async with self._lock:
            if self._pool is None:
                try:
                    conn = await asyncpg.connect(self.dsn, password=self._password, timeout=self.connect_timeout)
                    try:
                        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                    finally:
                        await conn.close()
                    self._pool = await asyncpg.create_pool(
                        self.dsn,
                        password=self._password,
                        min_size=1,
                        max_size=self.max_connections,
                        timeout=self.connect_timeout,
                        init=self._prepare,
                    )
                except asyncpg.InsufficientPrivilegeError as exc:
                    raise VectorStoreError(
                        "vector_store_error",
                        "pgvector: the `vector` extension is not installed and this role may not create it",
                    ) from exc
                except Exception as exc:
                    raise _error(exc) from exc
            return self._pool

    async def _run(self, fn: Any) -> Any:
        pool = await self._get_pool()
        try:
            async with pool.acquire() as conn:
                return await fn(conn)
        except Exception as exc:
            error = _error(exc)
            if error.code == "vector_index_not_found":
                self._dimensions.clear()  # another process dropped a table this one had cached
            raise error from exc

    async def _table(self, conn: Any, name: str) -> tuple[str, int]:
        known = self._dimensions.get(name)
        if known is None:
            row = await conn.fetchrow(f"SELECT table_name, dimension FROM {CATALOG} WHERE name = $1", name)
            if row is None:
                raise VectorStoreError("vector_index_not_found", f"Vector index {name} does not exist")
            known = self._dimensions[name] = (row["table_name"], int(row["dimension"]))
        return known

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            if self._loop is asyncio.get_running_loop():
                await pool.close()
            else:
                pool.terminate()

    # -- the port -------------------------------------------------------------------------

    async def health(self) -> None:
        await self._run(lambda conn: conn.fetchval("SELECT 1"))

    async def ensure_index(self, name: str, dimension: int, fields: Mapping[str, str] | None = None) -> None:
        table = table_name(name)

        async def run(conn: Any) -> None:
            async with conn.transaction():
                await _lock_index(conn, name)
                row = await conn.fetchrow(f"SELECT table_name, dimension FROM {CATALOG} WHERE name = $1", name)
                if row is not None:
                    if int(row["dimension"]) != dimension:
                        raise VectorStoreError(
                            "vector_dimension_mismatch",
                            f"Index {name} has dimension {row['dimension']}, not {dimension}",
                        )
                    return
                await conn.execute(
                    f'CREATE TABLE "{table}" (id text PRIMARY KEY, document_id text, '
                    f"embedding vector({int(dimension)}) NOT NULL, payload jsonb NOT NULL DEFAULT '{{}}')"
                )
                await conn.execute(
                    f'CREATE INDEX "{table}_hnsw" ON "{table}" USING hnsw (embedding vector_cosine_ops) '
                    f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
                )
                await conn.execute(f'CREATE INDEX "{table}_doc" ON "{table}" (document_id)')
                await conn.execute(f'CREATE INDEX "{table}_payload" ON "{table}" USING gin (payload jsonb_path_ops)')
                await conn.execute(
                    f"INSERT INTO {CATALOG} (name, table_name, dimension) VALUES ($1, $2, $3)",
                    name,
                    table,
                    int(dimension),
                )
            self._dimensions[name] = (table, int(dimension))

        if not 1 <= int(dimension) <= 16000:
            raise VectorStoreError("vector_dimension_mismatch", "pgvector indexes hold 1 to 16,000 dimensions")
        await self._run(run)

    async def upsert(
        self, name: str, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]
    ) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(ids) != len(vectors) or len(ids) != len(payloads):
            raise VectorStoreError("vector_records_invalid", "As many ids, vectors and payloads are needed")
        if not len(ids):
            return
        if not np.isfinite(vectors).all():
            raise VectorStoreError("vector_records_invalid", "Vectors must be finite numbers")

        async def run(conn: Any) -> None:
            table, dimension = await self._table(conn, name)
            check_dimension(vectors, dimension)
            sql = (
                f'INSERT INTO "{table}" (id, document_id, embedding, payload) VALUES ($1, $2, $3, $4::jsonb) '
                "ON CONFLICT (id) DO UPDATE SET document_id = EXCLUDED.document_id, "
                "embedding = EXCLUDED.embedding, payload = EXCLUDED.payload"
            )
            async with conn.transaction():
                for start in range(0, len(ids), BATCH):
                    end = min(start + BATCH, len(ids))
                    await conn.executemany(
                        sql,
                        [
                            (str(ids[i]), _document_id(payloads[i]), vectors[i], json.dumps(payloads[i] or {}))
                            for i in range(start, end)
                        ],
                    )

        await self._run(run)

    async def _delete_where(self, name: str, column: str, values: Sequence[str]) -> None:
        if not values:
            return

        async def run(conn: Any) -> None:
            try:
                table, _ = await self._table(conn, name)
            except VectorStoreError as exc:
                if exc.code == "vector_index_not_found":
                    return
                raise
            await conn.execute(f'DELETE FROM "{table}" WHERE {column} = ANY($1::text[])', [str(v) for v in values])

        await self._run(run)

    async def delete(self, name: str, ids: Sequence[str]) -> None:
        await self._delete_where(name, "id", ids)

    async def delete_documents(self, name: str, document_ids: Sequence[str]) -> None:
        await self._delete_where(name, "document_id", document_ids)

    async def query(
        self,
        name: str,
        vector: np.ndarray,
        top_k: int,
        *,
        filters: Filters | None = None,
        allowed_ids: Sequence[str] | None = None,
    ) -> list[VectorHit]:
        vector = np.asarray(vector, dtype=np.float32)
        if top_k <= 0:
            return []

        async def run(conn: Any) -> list[VectorHit]:
            table, dimension = await self._table(conn, name)
            if vector.shape != (dimension,):
                raise VectorStoreError(
                    "vector_dimension_mismatch", f"Index {name} has dimension {dimension}, the query {vector.shape[-1]}"
                )
            where, args = [], [vector, int(top_k)]
            if filters:  # exact matches on the payload (GIN containment keeps the JSON types)
                args.append(json.dumps(dict(filters)))
                where.append(f"payload @> ${len(args)}::jsonb")
            elif allowed_ids is not None:
                args.append([str(i) for i in allowed_ids])
                where.append(f"id = ANY(${len(args)}::text[])")
            clause = f"WHERE {' AND '.join(where)}" if where else ""
            rows = await conn.fetch(
                f'SELECT id, payload, embedding <=> $1 AS distance FROM "{table}" {clause} '
                "ORDER BY embedding <=> $1 LIMIT $2",
                *args,
            )
            return [VectorHit(row["id"], 1.0 - float(row["distance"]), json.loads(row["payload"])) for row in rows]

        return await self._run(run)

    async def drop_index(self, name: str) -> None:
        table = table_name(name)

        async def run(conn: Any) -> None:
            async with conn.transaction():
                await _lock_index(conn, name)
                await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
                await conn.execute(f"DELETE FROM {CATALOG} WHERE name = $1", name)
            self._dimensions.pop(name, None)

        await self._run(run)

    async def count(self, name: str) -> int | None:
        async def run(conn: Any) -> int | None:
            exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", CATALOG)
            row = await conn.fetchrow(f"SELECT table_name FROM {CATALOG} WHERE name = $1", name) if exists else None
            if row is None:
                self._dimensions.pop(name, None)
                return None
            return int(await conn.fetchval(f'SELECT count(*) FROM "{row["table_name"]}"'))

        return await self._run(run)

    async def flush(self, name: str) -> None:
        return None  # every write is committed


def _document_id(payload: dict[str, Any] | None) -> str | None:
    value = (payload or {}).get("document_id")
    return None if value is None else str(value)


_shared: dict[tuple[str, str], PgVectorStore] = {}


def shared_store(dsn: str, password: str | None = None) -> PgVectorStore:
    """The process's store for one database and role (its pool is reused across requests)."""
    key = (dsn, hashlib.sha256((password or "").encode()).hexdigest())
    store = _shared.get(key)
    if store is None:
        store = _shared[key] = PgVectorStore(dsn, password=password)
    return store


async def close_pools() -> None:
    """Close every shared store's pool (the app's shutdown)."""
    for store in list(_shared.values()):
        await store.close()
    _shared.clear()
