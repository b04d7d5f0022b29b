"""The live recorder: each entity and history item is written (and announced) the moment it exists.

An entity is a row of `arted_entities` numbered by production order (`01_input.txt`, ...); text
and JSON live in the row, media bytes in the blob store under `arted/runs/<run_id>/`. Every write
is one short transaction that also moves the run's state, then an `arted.run` event is published
(`{run_id, status, stage, step, entity?}`) for anyone following the run.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import delete, insert, update

from kiln.apps.arted.models import IN_PROGRESS, Entity, Item, Run
from kiln.core.db import utcnow

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
RUNS, ENTITIES, ITEMS = Run.__table__, Entity.__table__, Item.__table__
_ITEM_OPTIONAL = ("loop_iteration", "file_path", "config_used", "model_used", "backend_used", "execution_time")
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


class Recorder:
    def __init__(self, kernel: Any, run_id: str):
        self.kernel = kernel
        self.run_id = run_id
        self.sequence = 0
        self.items = 0
        self.stage = 0
        self.step = "queued"
        self.started = time.perf_counter()
        self._pending: list[Any] = []  # written with the next transaction (start rides with the input entity)
        self._pending_values: dict[str, Any] = {}

    async def _commit(self, statements: list[Any], entity: dict[str, Any] | None = None,
                      status: str = IN_PROGRESS) -> None:
        """Run the statements in one transaction on a bare connection (Core, no ORM unit of work)."""
        async with self.kernel.db.engine.begin() as conn:
            for statement in statements:
                await conn.execute(statement)
        event: dict[str, Any] = {"run_id": self.run_id, "status": status, "stage": self.stage, "step": self.step}
        if entity is not None:
            event["entity"] = entity
        await self.kernel.events.publish("arted.run", event)

    def _items(self, items: list[dict[str, Any]]) -> list[Any]:
        """One multi-row INSERT for the history items of a step (none when there are none)."""
        rows = []
        for item in items:
            self.items += 1
            row = {"run_id": self.run_id, "sequence_number": self.items, "timestamp": utcnow(), "media_type": "text",
                   "content": None, "meta": {}, **{c: None for c in _ITEM_OPTIONAL}}
            row.update({k: v for k, v in item.items() if k != "meta"})
            row["meta"] = item.get("meta") or {}
            rows.append(row)
        return [insert(ITEMS).values(rows)] if rows else []

    def _state(self, **values: Any) -> Any:
        return update(RUNS).where(RUNS.c.id == self.run_id).values(
            current_stage=self.stage, current_step=self.step, entity_count=self.sequence, items_count=self.items,
            **values)

    async def start(self, meta: dict[str, Any], *, fresh: bool) -> None:
        """Mark the run in progress and log `pipeline_start`; an earlier attempt's traces are cleared first."""
        self.step = "pipeline_starting"
        statements: list[Any] = []
        if not fresh:
            await self.kernel.blobs.delete_prefix(blob_prefix(self.run_id))
            statements += [delete(ENTITIES).where(ENTITIES.c.run_id == self.run_id),
                           delete(ITEMS).where(ITEMS.c.run_id == self.run_id)]
        self._pending = statements + self._items([{"stage": 0, "item_type": "pipeline_start",
                                                   "media_type": "metadata", "meta": meta}])
        self._pending_values = {"status": IN_PROGRESS, "started_at": utcnow()}

    async def set_state(self, stage: int, step: str) -> None:
        self.stage, self.step = stage, step
        statements = self._pending + [self._state(**self._pending_values)]
        self._pending, self._pending_values = [], {}
        await self._commit(statements)

    async def record(self, entity_type: str, value: str | dict[str, Any] | bytes, *,
                     meta: dict[str, Any] | None = None, items: list[dict[str, Any]] | None = None,
                     run_values: dict[str, Any] | None = None,
                     then: tuple[int, str] | None = None) -> dict[str, Any]:
        """Store one entity (and the history items that go with it) in one transaction; `then` moves
        the run to its next (stage, step) in the same transaction."""
        self.sequence += 1
        seq = self.sequence
        content: str | None = None
        blob_key = None
        if isinstance(value, bytes):
            mime, ext = sniff(value)
            filename = f"{seq:02d}_{entity_type}.{ext}"
            blob_key = blob_prefix(self.run_id) + filename
            await self.kernel.blobs.write_bytes(blob_key, value)
            size = len(value)
        elif isinstance(value, dict):
            mime, filename = JSON, f"{seq:02d}_{entity_type}.json"
            content = json.dumps(value, ensure_ascii=False)
            size = len(content.encode())
        else:
            mime, filename, content = TEXT, f"{seq:02d}_{entity_type}.txt", value
            size = len(value.encode())
        row = {"run_id": self.run_id, "sequence": seq, "type": entity_type, "filename": filename, "mime_type": mime,
               "size": size, "content": content, "blob_key": blob_key, "meta": meta or {}, "created_at": utcnow()}
        statements: list[Any] = self._pending + [insert(ENTITIES).values(**row)] + self._items(items or [])
        if then is not None:
            self.stage, self.step = then
        statements.append(self._state(**{**self._pending_values, **(run_values or {})}))
        self._pending, self._pending_values = [], {}
        view = {"sequence": f"{seq:02d}", "type": entity_type, "filename": filename, "available": True,
                "mime_type": mime.split(";")[0], "size": size}
        await self._commit(statements, view)
        return view

    async def log(self, items: list[dict[str, Any]], run_values: dict[str, Any] | None = None) -> None:
        await self._commit(self._items(items) + [self._state(**(run_values or {}))])

    async def finish(self, status: str, items: list[dict[str, Any]], **values: Any) -> None:
        self.step = "complete" if status != "failed" else "failed"
        total = round(time.perf_counter() - self.started, 4)
        statements = self._pending + self._items(items)
        statements.append(self._state(**{**self._pending_values, "status": status, "finished_at": utcnow(),
                                         "total_execution_time": total, **values}))
        self._pending, self._pending_values = [], {}
        await self._commit(statements, status=status)
