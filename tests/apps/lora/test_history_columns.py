"""`lora_generation_results`: the history's columns follow the generation jobs they are derived
from (database triggers, migration 0018) on SQLite and PostgreSQL, whoever writes the job, and
the migration fills them for the generations that existed before it."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import delete, insert, select, text, update

from kiln.apps.lora.models import GenerationResult
from kiln.core.db import Database
from kiln.core.jobs import Job
from kiln.core.migrations import upgrade
from tests.apps.lora.test_history import _job
from tests.conftest import PG_ADMIN_DSN, _pg_admin, _pg_url

COLUMNS = ("prompt_key", "search_text", "width", "height", "rating", "sort_rating", "is_favorite", "bytes")


async def _rows(db: Database) -> dict[str, tuple]:
    async with db.session() as session:
        rows = (await session.execute(select(GenerationResult))).scalars().all()
    return {row.job_id: tuple(getattr(row, name) for name in COLUMNS) for row in rows}


async def test_rows_follow_every_write_of_the_job(kernel) -> None:
    db = kernel.db
    done = _job("A Red Fox", negative="Blurry", width=768, height=512, rating=4, favorite=True, size=1234)
    queued = _job("queued one", status="queued")
    other = _job("not a generation", kind="lora.deliver")
    async with db.session() as session:
        await session.execute(insert(Job), [done, queued, other])
        await session.commit()
    assert await _rows(db) == {done["id"]: ("a red fox", "a red fox\nblurry", 768, 512, 4, 4, True, 1234)}

    async with db.session() as session:  # what the rating / favourite routes write
        job = await session.get(Job, done["id"])
        job.result = {**job.result, "rating": None, "is_favorite": False}
        await session.commit()
    assert (await _rows(db))[done["id"]][4:7] == (None, 0, False)

    async with db.session() as session:  # the engine finishing the queued job
        await session.execute(
            update(Job).where(Job.id == queued["id"]).values(status="succeeded", result={"bytes": 7, "rating": 2})
        )
        await session.commit()
    assert (await _rows(db))[queued["id"]] == ("queued one", "queued one\n", 512, 512, 2, 2, False, 7)

    async with db.session() as session:
        await session.execute(update(Job).where(Job.id == queued["id"]).values(status="failed"))
        await session.execute(delete(Job).where(Job.id == done["id"]))
        await session.commit()
    assert await _rows(db) == {}


async def test_odd_json_never_breaks_the_jobs_write(kernel) -> None:
    """Values of the wrong type become NULL / false in the columns; the job itself is written."""
    row = _job("odd", width=512)
    row["payload"]["params"]["width"] = 1e30
    row["payload"]["params"]["height"] = "768"
    row["result"] = {"rating": "5", "is_favorite": "yes", "bytes": 2**70}
    prompt_list = _job("x")
    prompt_list["payload"]["prompt"] = None
    prompt_list["result"] = ["not", "an", "object"]
    async with kernel.db.session() as session:
        await session.execute(insert(Job), [row, prompt_list])
        await session.commit()
    rows = await _rows(kernel.db)
    assert rows[row["id"]] == ("odd", "odd\n", None, None, None, 0, False, None)
    assert rows[prompt_list["id"]] == ("", "\n", 512, 512, None, 0, False, None)


async def test_rating_route_moves_the_result_in_the_rating_sort(client, app) -> None:
    old, new = _job("old", age=timedelta(hours=2)), _job("new", age=timedelta(hours=1))
    async with app.state.kernel.db.session() as session:
        await session.execute(insert(Job), [old, new])
        await session.commit()
    page = (await client.get("/v1/generation/results", params={"page": 1, "sort": "rating"})).json()
    assert [r["id"] for r in page["results"]] == [new["id"], old["id"]]
    assert (await client.put(f"/v1/generation/results/{old['id']}/rating", json={"rating": 3})).status_code == 200
    page = (await client.get("/v1/generation/results", params={"page": 1, "sort": "rating"})).json()
    assert [r["id"] for r in page["results"]] == [old["id"], new["id"]]
    assert page["stats"]["avg_rating"] == 3


def _legacy_job(prompt: str, status: str, rating: int | None) -> dict:
    at = datetime.now(UTC) - timedelta(hours=1)
    return {
        "id": str(uuid.uuid4()),
        "kind": "lora.generate",
        "surface": "lora",
        "status": status,
        "payload": json.dumps({"prompt": prompt, "params": {"width": 640, "height": 480, "negative_prompt": "n"}}),
        "result": json.dumps({"rating": rating, "is_favorite": True, "bytes": 99}),
        "at": at,
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_fills_the_columns_of_existing_generations(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'kiln.db'}"
    else:
        name = f"kiln_test_mig_{uuid.uuid4().hex[:8]}"
        try:
            asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        except (OSError, asyncpg.PostgresError) as exc:
            pytest.fail(f"PostgreSQL is needed ({PG_ADMIN_DSN}): {exc}")
        url = _pg_url(name)
    try:
        upgrade(url, "0017_lora_file_stat")
        rows = [_legacy_job("Before Migration", "succeeded", 5), _legacy_job("failed one", "failed", None)]
        payload, result = (
            ("CAST(:payload AS jsonb)", "CAST(:result AS jsonb)")
            if backend == "postgresql"
            else (":payload", ":result")
        )

        async def seed() -> None:
            db = Database(url)
            try:
                async with db.session() as session:
                    for row in rows:
                        await session.execute(
                            text(
                                "INSERT INTO jobs (id, kind, surface, status, progress, attempts, max_attempts,"
                                f" payload, result, created_at, updated_at) VALUES (:id, :kind, :surface, :status,"
                                f" 1, 1, 1, {payload}, {result}, :at, :at)"
                            ),
                            row,
                        )
                    await session.commit()
            finally:
                await db.dispose()

        async def read() -> dict[str, tuple]:
            db = Database(url)
            try:
                return await _rows(db)
            finally:
                await db.dispose()

        asyncio.run(seed())
        upgrade(url)
        found = asyncio.run(read())
        assert found == {rows[0]["id"]: ("before migration", "before migration\nn", 640, 480, 5, 5, True, 99)}
    finally:
        if backend == "postgresql":
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
