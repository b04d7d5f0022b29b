"""Health of the genai surface and the voice wake-event intake (in-memory, per process)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from typing import Any

from kiln.providers.http import ProviderClient, ProviderError

MAX_TRACKED = 10_000


async def reachable(url: str, path: str, timeout: float = 1.5) -> bool:
    """Whether `url+path` answers 2xx; local probe, no retries."""
    client = ProviderClient(url, name="health", timeout=timeout, connect_timeout=timeout, max_retries=0)
    try:
        await client.request("GET", path)
        return True
    except ProviderError:
        return False
    finally:
        await client.aclose()


async def service_checks(targets: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """(name, url, health path) → reachability, probed concurrently."""
    results = await asyncio.gather(*(reachable(url, path) for _, url, path in targets))
    return [
        {"service": name, "target": url, "reachable": ok} for (name, url, _), ok in zip(targets, results, strict=True)
    ]


class WakeEvents:
    """Dedupe by event id and cooldown per (device, wake word); bounded memory."""

    def __init__(self) -> None:
        self.last_by_key: OrderedDict[str, float] = OrderedDict()
        self.seen_ids: OrderedDict[str, float] = OrderedDict()

    @staticmethod
    def _remember(store: OrderedDict[str, float], key: str, now: float) -> None:
        store[key] = now
        store.move_to_end(key)
        while len(store) > MAX_TRACKED:
            store.popitem(last=False)

    def accept(self, payload: dict[str, Any], threshold: float, cooldown_ms: int) -> tuple[int, dict[str, Any]]:
        wake_word = str(payload.get("wake_word", "unknown")).strip()[:100] or "unknown"
        device = str(payload.get("source_device_id", "default")).strip()[:100] or "default"
        event_id = str(payload.get("event_id", "") or "").strip()[:100]
        try:
            confidence = float(payload.get("confidence", 1.0))
        except (TypeError, ValueError):
            return 400, {"accepted": False, "reason": "invalid_confidence"}
        if confidence != confidence or not 0 <= confidence <= 1:
            return 400, {"accepted": False, "reason": "invalid_confidence"}
        if confidence < threshold:
            return 202, {"accepted": False, "reason": "below_threshold"}
        now = time.time()
        cooldown = cooldown_ms / 1000
        if event_id:
            horizon = now - max(cooldown * 2, 5.0)
            while self.seen_ids and next(iter(self.seen_ids.values())) < horizon:
                self.seen_ids.popitem(last=False)
            if event_id in self.seen_ids:
                return 202, {"accepted": False, "reason": "duplicate_event_id"}
            self._remember(self.seen_ids, event_id, now)
        key = f"{device}:{wake_word}"
        last = self.last_by_key.get(key)
        if last is not None and now - last < cooldown:
            return 202, {"accepted": False, "reason": "cooldown_active"}
        self._remember(self.last_by_key, key, now)
        body: dict[str, Any] = {
            "accepted": True,
            "wake_word": wake_word,
            "source_device_id": device,
            "confidence": confidence,
            "session_token": str(uuid.uuid4()),
            "received_at_unix": now,
        }
        if event_id:
            body["event_id"] = event_id
        return 200, body
