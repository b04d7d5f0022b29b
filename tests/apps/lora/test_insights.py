"""Analytics, dashboard and system status computed from real job history and real probes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.apps.lora.kit import configure, create, write_lora
from tests.fakes.sdnext import FakeSDNext

SMALL = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64}


async def test_empty_history(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    summary = (await client.get("/v1/analytics/summary")).json()
    assert summary["kpis"]["total_generations"] == 0 and summary["kpis"]["success_rate"] == 0
    assert [i["id"] for i in summary["performance_insights"]] == ["insight-no-data"]  # no false alarm
    volume = summary["chart_data"]["generation_volume"]
    assert len(volume) == 24 and all(p["count"] == 0 for p in volume)  # zero-filled
    assert summary["chart_data"]["resource_usage"] == []  # nothing invented
    assert (
        len((await client.get("/api/v1/analytics/timeseries", params={"time_range": "7d"})).json()["generation_volume"])
        == 7
    )
    bad = await client.get("/v1/analytics/stats", params={"time_range": "1y"})
    assert bad.status_code == 422 and set(bad.json()) == {"type", "title", "status"}
    dash = (await client.get("/v1/dashboard/stats")).json()
    assert dash["stats"] == {
        "total_loras": 0,
        "active_loras": 0,
        "embeddings_coverage": 0,
        "recent_imports": 0,
        "active_jobs": 0,
    }
    assert dash["system_health"]["queue_status"] == "idle"
    assert (await client.get("/v1/dashboard/featured-loras")).json() == []
    assert (await client.get("/v1/dashboard/activity-feed")).json() == []


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
async def test_history_numbers(client, app, lora_dir: Path, fake_sdnext: FakeSDNext, prefix: str) -> None:
    configure(app, lora_dir, sdnext_url=fake_sdnext.url)
    a = await create(client, write_lora(lora_dir / "ink.safetensors", output_name="inkwash"), "Ink")
    await client.post(f"{prefix}/adapters/{a['id']}/activate")
    body = {"compose_request": {}, "generation_params": SMALL}
    for _ in range(2):
        res = await client.post(f"{prefix}/generation/compose-and-generate", json=body)
        assert res.json()["status"] == "completed"
    fake_sdnext.fail_next("CUDA out of memory")
    assert (await client.post(f"{prefix}/generation/generate", json=SMALL)).json()["status"] == "failed"
    stats = (await client.get(f"{prefix}/analytics/stats")).json()
    assert stats["total_generations"] == 3 and stats["total_failed"] == 1
    assert stats["success_rate"] == pytest.approx(66.67) and stats["active_loras"] == 1 and stats["total_loras"] == 1
    assert stats["avg_generation_time"] >= 0
    errors = (await client.get(f"{prefix}/analytics/errors")).json()
    assert errors == [
        {"type": "CUDA out of memory", "count": 1, "percentage": 100.0, "description": "CUDA out of memory"}
    ]
    summary = (await client.get(f"{prefix}/analytics/summary")).json()
    assert sum(p["count"] for p in summary["chart_data"]["generation_volume"]) == 3
    assert summary["chart_data"]["lora_usage"] == [{"name": "Ink", "usage_count": 2}]
    titles = {i["title"] for i in summary["performance_insights"]}
    assert "Declining success rate" in titles and "Frequent error: CUDA out of memory" in titles
    feed = (await client.get(f"{prefix}/dashboard/activity-feed")).json()
    assert len(feed) == 3 and {f["status"] for f in feed} == {"succeeded", "failed"}
    featured = (await client.get(f"{prefix}/dashboard/featured-loras")).json()
    assert [f["name"] for f in featured] == ["Ink"]
    status = (await client.get(f"{prefix}/system/status")).json()
    assert status["sdnext"]["configured"] and status["sdnext"]["reachable"]
    assert status["broker"]["reachable"] and status["metrics"]["disk_total"] > 0
    assert any("failed in the last hour" in w for w in status["warnings"])
    if not status["gpu_available"]:
        assert status["memory_total"] == 0  # never system RAM as GPU memory


async def test_status_unreachable_sdnext(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir, sdnext_url="http://127.0.0.1:9")
    status = (await client.get("/v1/system/status")).json()
    assert status["sdnext"]["configured"] and not status["sdnext"]["reachable"]
    assert status["status"] == "warning" and "SDNext is not reachable" in status["warnings"]
    configure(app, lora_dir)
    status = (await client.get("/v1/system/status")).json()
    assert status["sdnext"] == {"configured": False, "reachable": False}
