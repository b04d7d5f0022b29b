"""Helpers for the robotics HTTP tests: recordings on disk, registering, waiting for jobs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from tests.apps.robotics import bagfactory as bf

SMALL = bf.RecordingPlan(duration_s=1.0)


def recording(directory: Path, name: str = "run.bag", fmt: str = "bag", plan: bf.RecordingPlan | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return bf.write_recording(directory / name, fmt, plan or SMALL)


async def register(client: httpx.AsyncClient, path: Path) -> dict[str, Any]:
    r = await client.post("/assets/register", json={"file_path": str(path)})
    assert r.status_code == 201, r.text
    return r.json()


async def register_indexed(client: httpx.AsyncClient, path: Path) -> dict[str, Any]:
    asset = await register(client, path)
    r = await client.post(f"/assets/{asset['id']}/index")
    assert r.status_code == 200, r.text
    assert r.json()["asset"]["indexing_status"] == "indexed"
    return r.json()["asset"]


async def wait_job(
    client: httpx.AsyncClient, job_id: str, statuses: set[str] | None = None, timeout: float = 60.0
) -> dict[str, Any]:
    statuses = statuses or {"succeeded", "failed", "cancelled"}
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} stayed {job['status']}"
        await asyncio.sleep(0.05)


def trigger_spec(fmt: str = "parquet", **output: Any) -> dict[str, Any]:
    """Camera frames joined with IMU and odometry (the domain tests' standard spec)."""

    def src(topic: str, field: str) -> dict[str, str]:
        return {"kind": "path", "topic": topic, "field_path": field}

    return {
        "row_strategy": {
            "kind": "trigger",
            "trigger_topic": "/camera/image_raw",
            "joins": [{"topic": "/imu"}, {"topic": "/odom", "sync_policy": "nearest"}],
        },
        "features": {
            "image": {"source": src("/camera/image_raw", "data"), "dtype": "bytes"},
            "acc": {"source": src("/imu", "linear_acceleration.x"), "dtype": "float64"},
            "odom_x": {"source": src("/odom", "pose.pose.position.x"), "dtype": "float64"},
        },
        "output": {"format": fmt, **output},
    }


async def convert(client: httpx.AsyncClient, body: dict[str, Any], status: str = "succeeded") -> dict[str, Any]:
    r = await client.post("/conversions", json=body)
    assert r.status_code == 201, r.text
    job = await wait_job(client, r.json()["job_id"])
    assert job["status"] == status, job
    detail = await client.get(f"/conversions/{r.json()['id']}")
    assert detail.status_code == 200
    return detail.json()


async def outputs_of(client: httpx.AsyncClient, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The output records of a conversion (its `output_files` are plain paths)."""
    assert all(isinstance(p, str) for p in run["output_files"]), run["output_files"]
    r = await client.get("/outputs", params={"conversion_id": run["id"], "limit": 500})
    assert r.status_code == 200, r.text
    files = sorted(r.json(), key=lambda o: o["relative_path"])
    folder = run["output_path"]
    assert sorted(f"{folder}/{o['relative_path']}" for o in files) == sorted(run["output_files"])
    return files
