"""Dashboard over HTTP: empty shapes, aggregation, trend windows, blockers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.apps.robotics.api_helpers import convert, recording, register, register_indexed, trigger_spec, wait_job


async def test_empty_dashboard(client):
    s = (await client.get("/dashboard/summary")).json()
    assert s["inventory"] == {
        "asset_count": 0,
        "total_asset_bytes": 0,
        "registered_last_24h": 0,
        "registered_last_7d": 0,
        "registered_last_30d": 0,
    }
    assert s["indexing"]["status_counts"] == {"pending": 0, "indexing": 0, "indexed": 0, "failed": 0}
    assert s["jobs"]["active_count"] == 0 and s["jobs"]["failed_last_24h"] == 0
    assert s["outputs"]["availability_counts"] == [
        {"key": "ready", "count": 0},
        {"key": "missing", "count": 0},
        {"key": "invalid", "count": 0},
    ]
    assert s["outputs"]["format_counts"] == []
    fresh = s["freshness"]
    assert fresh["computed_at"] and all(v is None for k, v in fresh.items() if k != "computed_at")
    assert (await client.get("/dashboard/blockers")).json() == {
        "pending_assets": 0,
        "failed_assets": 0,
        "failed_jobs": 0,
        "failed_conversions": 0,
        "missing_outputs": 0,
        "invalid_outputs": 0,
    }


@pytest.mark.parametrize("days", [1, 7, 90])
async def test_trend_windows(client, days):
    t = (await client.get("/dashboard/trends", params={"days": days})).json()
    today = datetime.now(UTC).date()
    for key in (
        "registrations_by_day",
        "job_failures_by_day",
        "conversions_by_day",
        "conversion_failures_by_day",
        "outputs_created_by_day",
    ):
        assert len(t[key]) == days and t[key][-1]["date"] == today.isoformat()
        assert t[key][0]["date"] == (today - timedelta(days=days - 1)).isoformat()
        assert sum(b["count"] for b in t[key]) == 0


async def test_trend_days_validation(client):
    for bad in ("0", "91", "x"):
        r = await client.get("/dashboard/trends", params={"days": bad})
        assert r.status_code == 422 and "days" in r.json()["detail"]
    assert (await client.get("/dashboard/trends")).json()["days"] == 7


async def test_aggregation(client, tmp_path):
    asset = await register_indexed(client, recording(tmp_path, "a.bag"))
    await register(client, recording(tmp_path, "b.bag"))
    broken = tmp_path / "c.bag"
    broken.write_bytes(b"bad")
    bad = await register(client, broken)
    await client.post(f"/assets/{bad['id']}/index")
    await convert(client, {"asset_ids": [asset["id"]], "spec": trigger_spec()})
    # a queued conversion must not break the summary (the reference answered 500)
    r = await client.post("/conversions", json={"asset_ids": [asset["id"]], "spec": trigger_spec()})
    s = await client.get("/dashboard/summary")
    assert s.status_code == 200
    await wait_job(client, r.json()["job_id"])
    s = (await client.get("/dashboard/summary")).json()
    assert s["inventory"]["asset_count"] == 3 and s["inventory"]["registered_last_24h"] == 3
    assert s["indexing"]["status_counts"] == {"pending": 1, "indexing": 0, "indexed": 1, "failed": 1}
    assert s["jobs"]["status_counts"]["failed"] == 1 and s["jobs"]["failed_last_24h"] == 1
    assert s["conversions"]["status_counts"]["succeeded"] == 2
    assert s["outputs"]["output_count"] == 6
    assert {c["key"]: c["count"] for c in s["outputs"]["format_counts"]} == {"parquet": 2, "json": 2, "md": 2}
    assert s["freshness"]["latest_output_update_at"] is not None
    t = (await client.get("/dashboard/trends", params={"days": 3})).json()
    assert t["registrations_by_day"][-1]["count"] == 3 and t["conversions_by_day"][-1]["count"] == 2
    assert t["job_failures_by_day"][-1]["count"] == 1 and t["outputs_created_by_day"][-1]["count"] == 6
    b = (await client.get("/dashboard/blockers")).json()
    assert b == {
        "pending_assets": 1,
        "failed_assets": 1,
        "failed_jobs": 1,
        "failed_conversions": 0,
        "missing_outputs": 0,
        "invalid_outputs": 0,
    }
