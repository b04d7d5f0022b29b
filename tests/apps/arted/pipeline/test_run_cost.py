"""What one run costs the database: every SQL statement SQLite is handed, counted.

The counts do not depend on the machine's load, unlike the bench's timings, so they pin the
hot path: a statement or a commit added to a run shows up here.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import httpx
import pytest

from kiln.settings import Settings
from tests.conftest import make_settings

BODY = {"schema": "dada", "input_text": "Ein Hund spielt im Garten", "safety_level": "kids"}


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    # the periodic writes (job and worker heartbeats) kept out of the count: they follow the clock
    return make_settings(tmp_path / "home", db_url, job_heartbeat_seconds=60, job_stale_seconds=600)


@pytest.fixture
def sql_log(db_backend: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Statements of every SQLite connection opened from now on (set up before the app)."""
    if db_backend != "sqlite":
        pytest.skip("statements are traced with sqlite3's trace callback")
    log: list[str] = []
    connect = sqlite3.connect

    def traced(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(log.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced)
    return log


def verbs(log: list[str]) -> Counter[str]:
    # sqlite3 reports a statement again each time it enters a trigger program (lora keeps its
    # history columns with triggers on `jobs`), with the same expanded text (parameters bound):
    # an entry equal to the one before it is that echo, not a second statement.
    sent = [sql for i, sql in enumerate(log) if i == 0 or sql != log[i - 1]]
    return Counter(sql.split(None, 1)[0].upper() for sql in sent if not sql.startswith("PRAGMA"))


async def test_a_run_costs_few_statements_and_commits(sql_log: list[str], arted: httpx.AsyncClient) -> None:
    for _ in range(2):  # warm: the first run may open pooled connections
        assert (await arted.post("/api/schema/pipeline/execute", json=BODY)).status_code == 200
    sql_log.clear()
    runs = 3
    for _ in range(runs):
        r = await arted.post("/api/schema/pipeline/execute", json=BODY)
        assert r.status_code == 200 and r.json()["outputs_generated"] == 1
    counts = verbs(sql_log)
    statements = sum(n for verb, n in counts.items() if verb not in ("BEGIN", "COMMIT", "ROLLBACK"))
    print(f"per run: {statements / runs:g} statements, {counts['COMMIT'] / runs:g} commits; {dict(counts)}")
    assert counts["COMMIT"] <= 8 * runs  # 9 before the input went with the INSERT
    assert statements <= 11 * runs  # 14 before: the run read back at the start and at the end
