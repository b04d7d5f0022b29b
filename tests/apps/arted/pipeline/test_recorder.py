"""The recorder's writes (group commit of concurrent runs' steps) and the stage-4 graph copy."""

from __future__ import annotations

import asyncio

from sqlalchemy import event, insert, select

import kiln.apps.arted.jobs  # noqa: F401  (registers arted.run)
from kiln.apps.arted.configs.registry import registry
from kiln.apps.arted.models import COMPLETED, Run
from kiln.apps.arted.pipeline import stages
from kiln.apps.arted.pipeline.recorder import Recorder, opening

RUNS = Run.__table__


def _fields(run_id: str) -> dict:
    return {
        "id": run_id,
        "mode": "full",
        "config_id": "dada",
        "user_id": "u",
        "session_id": "s",
        "safety_level": "kids",
        "execution_mode": "eco",
        "input_text": f"text {run_id}",
        "options": {},
    }


async def _new_runs(kernel, n: int) -> list[str]:
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(n)]
    async with kernel.db.engine.begin() as conn:
        await conn.execute(insert(RUNS), [{**_fields(run_id), "backend_info": [], "outputs": []} for run_id in ids])
    return ids


async def test_concurrent_runs_steps_share_commits_and_each_row_gets_its_own(kernel):
    ids = await _new_runs(kernel, 12)
    commits = []
    listener = lambda conn: commits.append(1)  # noqa: E731
    event.listen(kernel.db.engine.sync_engine, "commit", listener)
    try:

        async def run(run_id: str) -> None:
            rec = Recorder(kernel, run_id, opening(_fields(run_id)))  # what the row got at creation
            await rec.start(fresh=True)
            await rec.record("safety", {"safe": True}, run_values={"backend_info": [{"stage": 1}]})
            await rec.finish(COMPLETED, [], final_output=f"out {run_id}")

        await asyncio.gather(*(run(run_id) for run_id in ids))
    finally:
        event.remove(kernel.db.engine.sync_engine, "commit", listener)
    assert len(commits) < 3 * len(ids)  # one transaction per step before: 36
    async with kernel.db.engine.connect() as conn:
        rows = (await conn.execute(select(RUNS).where(RUNS.c.id.in_(ids)))).mappings().all()
    assert len(rows) == len(ids)
    for row in rows:
        assert row["status"] == COMPLETED and row["final_output"] == f"out {row['id']}"
        assert [e["type"] for e in row["entities"]] == ["input", "safety"]
        assert row["entities"][0]["content"] == f"text {row['id']}"
        assert row["entity_count"] == 2 and row["items_count"] == 2 and row["backend_info"] == [{"stage": 1}]
        assert row["started_at"] is not None and row["finished_at"] is not None


async def test_a_filled_workflow_leaves_the_shipped_graph_unchanged():
    reg = registry(None)
    output = next(c for c in reg.outputs() if c.media_type == "image")
    chunk = reg.output_chunk(output)
    before = repr(chunk.workflow)
    graph = stages.fill_workflow(chunk, stages.workflow_values(output, "a red fox", 42, "run-1"))
    again = stages.fill_workflow(chunk, stages.workflow_values(output, "a blue bird", 7, "run-2"))
    assert repr(chunk.workflow) == before
    prompt = chunk.input_mappings["prompt"]
    node, field = str(prompt["node_id"]), str(prompt["field"]).removeprefix("inputs.")
    assert graph[node]["inputs"][field] == "a red fox" and again[node]["inputs"][field] == "a blue bird"
    assert set(graph) == set(chunk.workflow)


async def test_a_step_that_cannot_be_written_fails_only_its_own_run(kernel):
    """Steps of concurrent runs share a transaction; one that breaks it must not take the others
    down with it (the group is written again one step at a time)."""
    ids = await _new_runs(kernel, 3)

    async def finish(run_id: str, bad: bool) -> None:
        rec = Recorder(kernel, run_id)
        outputs = [{"not json": {1, 2}}] if bad else [{"status": "success"}]  # a set is not JSON
        await rec.finish(COMPLETED, [], outputs=outputs, final_output=f"out {run_id}")

    results = await asyncio.gather(*(finish(run_id, i == 1) for i, run_id in enumerate(ids)), return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Exception)
    async with kernel.db.engine.connect() as conn:
        rows = {r.id: r for r in await conn.execute(select(RUNS.c.id, RUNS.c.status, RUNS.c.final_output))}
    assert rows[ids[0]].status == rows[ids[2]].status == COMPLETED
    assert rows[ids[2]].final_output == f"out {ids[2]}"
    assert rows[ids[1]].status != COMPLETED and rows[ids[1]].final_output is None
