"""The live recorder: each entity and history item is written (and announced) the moment it exists.

Entities are numbered by production order (`01_input.txt`, ...); text and JSON are kept inline,
media bytes in the blob store under `arted/runs/<run_id>/`. The run row holds both lists, so each
step is one UPDATE (lists, counters, stage and step together), committed before the step goes
on, then an `arted.run` event is published (`{run_id, status, stage, step, entity?}`). Steps
of runs going on at the same time share their transaction (group commit: one COMMIT, and one
executemany per column set, for all the steps that arrived while the previous one was written).
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, update

from kiln.apps.arted.models import IN_PROGRESS, Run
from kiln.apps.arted.runs.views import entity_brief
from kiln.core.db import Database, utcnow
from kiln.core.jobs.batching import GroupCommit

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
RUNS = Run.__table__
ITEM_FIELDS = (
    "stage",
    "loop_iteration",
    "media_type",
    "item_type",
    "content",
    "file_path",
    "config_used",
    "model_used",
    "backend_used",
    "execution_time",
)
# The run's values an answer reads once it has ended (`closing`), with the row's defaults.
CLOSING_DEFAULTS: dict[str, Any] = {
    "status": None,
    "final_output": None,
    "total_execution_time": None,
    "backend_info": [],
    "outputs": [],
    "used_seed": None,
    "error": None,
}
MEDIA_KIND = {"image": "image", "audio": "audio", "video": "video", "music": "audio"}


def blob_prefix(run_id: str) -> str:
    return f"arted/runs/{run_id}/"


def sniff(data: bytes) -> tuple[str, str]:
    """(mime type, extension) from the file's own header bytes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif", "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav", "wav"
    if data[:4] == b"fLaC":
        return "audio/flac", "flac"
    if data[:4] == b"OggS":
        return "audio/ogg", "ogg"
    if data[:3] == b"ID3" or data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg", "mp3"
    if data[4:8] == b"ftyp":
        return "video/mp4", "mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm", "webm"
    return "application/octet-stream", "bin"


@lru_cache(maxsize=64)
def _update_for(columns: frozenset[str]) -> Any:
    """A prepared `UPDATE arted_runs SET <columns> WHERE id = :run_id`, built once per column set
    (constructing and cache-keying a statement per step cost more than executing it)."""
    return (
        update(RUNS)
        .where(RUNS.c.id == bindparam("run_id"))
        .values({RUNS.c[name]: bindparam(name, type_=RUNS.c[name].type) for name in sorted(columns)})
    )


RowWrite = tuple[frozenset[str], dict[str, Any]]  # (columns, parameters incl. run_id)


class _RunWriter:
    """The group commit of one database's run-row updates."""

    def __init__(self, db: Database):
        self.db = db
        self.batches: GroupCommit[RowWrite, None] = GroupCommit(self._flush, retry_alone=True)

    async def _flush(self, writes: Sequence[RowWrite]) -> list[None]:
        by_columns: dict[frozenset[str], list[dict[str, Any]]] = {}
        for columns, params in writes:
            by_columns.setdefault(columns, []).append(params)
        async with self.db.engine.begin() as conn:
            for columns, rows in by_columns.items():
                await conn.execute(_update_for(columns), rows)
        return [None] * len(writes)


_writers: weakref.WeakKeyDictionary[Database, _RunWriter] = weakref.WeakKeyDictionary()


def _writer(db: Database) -> _RunWriter:
    writer = _writers.get(db)
    if writer is None:
        writer = _writers[db] = _RunWriter(db)
    return writer


def opening(run: dict[str, Any]) -> dict[str, Any]:
    """The run row's lists as the run is created (`run`: its columns, `pipeline.RUN_FIELDS`):
    `pipeline_start` and the user's input (entity and item) exist before any stage runs, so they
    go with the INSERT, not with an UPDATE of their own; the job resumes from them
    (`Recorder(..., opened=...)`)."""
    run_id, text = run["id"], run["input_text"]
    meta = {
        "config_name": run["config_id"],
        "execution_mode": run["execution_mode"],
        "safety_level": run["safety_level"],
        "user_id": run["user_id"],
        "session_id": run["session_id"],
    }
    language = (run["options"] or {}).get("user_language") or "de"
    rec = Recorder(None, run_id)
    rec._add_items(
        [
            {"stage": 0, "item_type": "pipeline_start", "media_type": "metadata", "meta": meta},
            {
                "stage": 1,
                "item_type": "user_input_text",
                "content": text,
                "meta": {"input_language": language, "char_count": len(text)},
            },
        ]
    )
    rec.add("input", text)
    return {"entities": rec.entities, "items": rec.items}


class Recorder:
    def __init__(self, kernel: Any, run_id: str, opened: dict[str, Any] | None = None):
        self.kernel = kernel
        self.run_id = run_id
        self.entities: list[dict[str, Any]] = list((opened or {}).get("entities", []))
        self.items: list[dict[str, Any]] = list((opened or {}).get("items", []))
        self.stored = sum(entity["size"] for entity in self.entities)
        self.stage = 0
        self.step = "queued"
        self.started = time.perf_counter()
        self._pending: dict[str, Any] = {}  # run values written with the next transaction
        self._deferred: list[dict[str, Any]] = []  # entity events published with the next transaction
        self.closing = dict(CLOSING_DEFAULTS)  # set as written; complete once `finish` returned

    async def _commit(
        self, values: dict[str, Any], entity: dict[str, Any] | None = None, status: str = IN_PROGRESS
    ) -> None:
        """One UPDATE of the run row (Core, no ORM unit of work), committed when this returns."""
        params = {
            "current_stage": self.stage,
            "current_step": self.step,
            "entities": self.entities,
            "items": self.items,
            "entity_count": len(self.entities),
            "items_count": len(self.items),
            "stored_bytes": self.stored,
            **self._pending,
            **values,
        }
        self._pending = {}
        self.closing.update((name, params[name]) for name in CLOSING_DEFAULTS.keys() & params.keys())
        columns = frozenset(params)
        params["run_id"] = self.run_id
        # the lists are encoded when the batch is written; a step whose caller was cancelled is
        # still written, so it gets copies that the caller cannot change afterwards
        params["entities"], params["items"] = list(self.entities), list(self.items)
        await _writer(self.kernel.db).batches.submit((columns, params))
        views = self._deferred + ([entity] if entity is not None else [])
        self._deferred = []
        for view in views or [None]:
            await self._announce(status, view)

    async def _announce(self, status: str, view: dict[str, Any] | None) -> None:
        event: dict[str, Any] = {"run_id": self.run_id, "status": status, "stage": self.stage, "step": self.step}
        if view is not None:
            event["entity"] = view
        await self.kernel.events.publish("arted.run", event)

    def _add_items(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            row: dict[str, Any] = {"sequence_number": len(self.items) + 1, "timestamp": utcnow().isoformat()}
            row.update({key: item.get(key) for key in ITEM_FIELDS})
            row["media_type"] = row["media_type"] or "text"
            row["metadata"] = item.get("meta") or {}
            self.items.append(row)

    async def start(self, *, fresh: bool) -> None:
        """Mark the run in progress at stage 1 (written with the stage's entity: until then the
        run's job being claimed is what says it started, see `service.settle`) and announce the
        input stored at creation; what an earlier attempt stored is removed first."""
        if not fresh:
            await self.kernel.blobs.delete_prefix(blob_prefix(self.run_id))
        self.stage, self.step = 1, "safety"
        self._pending = {"status": IN_PROGRESS, "started_at": utcnow()}
        for entity in self.entities:
            await self._announce(IN_PROGRESS, entity_brief(entity))

    async def set_state(self, stage: int, step: str) -> None:
        self.stage, self.step = stage, step
        await self._commit({})

    def _add(
        self,
        entity_type: str,
        mime: str,
        ext: str,
        size: int,
        *,
        content: str | None = None,
        blob_key: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        seq = len(self.entities) + 1
        entity = {
            "sequence": seq,
            "type": entity_type,
            "filename": f"{seq:02d}_{entity_type}.{ext}",
            "mime_type": mime,
            "size": size,
            "content": content,
            "blob_key": blob_key,
            "meta": meta or {},
            "created_at": utcnow().isoformat(),
        }
        self.entities.append(entity)
        self.stored += size
        return entity_brief(entity)

    def add(
        self, entity_type: str, value: str | dict[str, Any], *, meta: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Append a text or JSON entity (kept inline) to the lists; written with the next transaction."""
        if isinstance(value, dict):
            content = json.dumps(value, ensure_ascii=False)
            return self._add(entity_type, JSON, "json", len(content.encode()), content=content, meta=meta)
        return self._add(entity_type, TEXT, "txt", len(value.encode()), content=value, meta=meta)

    async def record(
        self,
        entity_type: str,
        value: str | dict[str, Any] | bytes,
        *,
        meta: dict[str, Any] | None = None,
        items: list[dict[str, Any]] | None = None,
        run_values: dict[str, Any] | None = None,
        then: tuple[int, str] | None = None,
        defer: bool = False,
    ) -> dict[str, Any]:
        """Store one entity (and the history items that go with it) in one transaction; `then` moves
        the run to its next (stage, step) in the same transaction. `defer` leaves the write to the
        next transaction (for the last entity, which `finish` writes a moment later)."""
        if isinstance(value, bytes):
            mime, ext = sniff(value)
            blob_key = f"{blob_prefix(self.run_id)}{len(self.entities) + 1:02d}_{entity_type}.{ext}"
            await self.kernel.blobs.write_bytes(blob_key, value)
            view = self._add(entity_type, mime, ext, len(value), blob_key=blob_key, meta=meta)
        else:
            view = self.add(entity_type, value, meta=meta)
        self._add_items(items or [])
        if then is not None:
            self.stage, self.step = then
        if defer:
            self._pending.update(run_values or {})
            self._deferred.append(view)
        else:
            await self._commit(run_values or {}, view)
        return view

    def pend(self, **values: Any) -> None:
        """Run values to write with the next transaction."""
        self._pending.update(values)

    async def finish(self, status: str, items: list[dict[str, Any]], **values: Any) -> None:
        self.step = "complete" if status != "failed" else "failed"
        self._add_items(items)
        total = round(time.perf_counter() - self.started, 4)
        await self._commit(
            {"status": status, "finished_at": utcnow(), "total_execution_time": total, **values}, status=status
        )
