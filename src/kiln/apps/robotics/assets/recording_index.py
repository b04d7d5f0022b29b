"""What an index of a recording holds, and the metadata document made from it.

`TopicIndex` / `RecordingIndex` (filled by `indexing.index_recording`), the reference's
substring classification of message types into modality and sensor family, and
`RecordingIndex.to_metadata(asset_id)`: the asset metadata document the robotics HTTP
surface stores (duration, start/end time, topics with type/count/rate/modality, sensor
types, default episode, raw metadata with the real chunk compression).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_TELEMETRY = (
    "odometry",
    "twist",
    "pose",
    "jointstate",
    "joint_state",
    "navsatfix",
    "gps",
    "temperature",
    "battery",
    "magneticfield",
    "fluidpressure",
)


def classify_message_type(msgtype: str) -> tuple[str, str]:
    """(modality, sensor family) of a message type, by substring like the reference."""
    t = msgtype.lower()
    if "image" in t:
        return "image", "camera"
    if any(k in t for k in ("pointcloud", "point_cloud", "laser", "scan")):
        return "points", "lidar"
    if "imu" in t:
        return "scalar_series", "imu"
    if any(k in t for k in _TELEMETRY):
        return "scalar_series", "telemetry"
    return "other", "other"


@dataclass
class TopicIndex:
    name: str
    message_type: str
    message_count: int
    first_ns: int | None = None
    last_ns: int | None = None

    @property
    def rate_hz(self) -> float:
        # (count - 1) / span: n messages delimit n - 1 periods (the reference used n / span)
        if self.message_count < 2 or self.first_ns is None or self.last_ns is None:
            return 0.0
        span = (self.last_ns - self.first_ns) / 1e9
        return round((self.message_count - 1) / span, 3) if span > 0 else 0.0

    @property
    def modality(self) -> str:
        return classify_message_type(self.message_type)[0]


@dataclass
class RecordingIndex:
    path: Path
    file_size_bytes: int
    storage_format: str
    ros_version: str
    compression_format: str
    index_source: str  # mcap-summary | bag-index | metadata-yaml | sqlite | scan
    start_ns: int | None
    end_ns: int | None
    topics: list[TopicIndex] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def message_count(self) -> int:
        return sum(t.message_count for t in self.topics)

    @property
    def duration_s(self) -> float | None:
        if self.start_ns is None or self.end_ns is None:
            return None
        return (self.end_ns - self.start_ns) / 1e9

    def topic(self, name: str) -> TopicIndex | None:
        return next((t for t in self.topics if t.name == name), None)

    def sensor_types(self) -> list[str]:
        seen: list[str] = []
        for t in self.topics:
            family = classify_message_type(t.message_type)[1]
            if family != "other" and family not in seen:
                seen.append(family)
        return seen or (["other"] if self.topics else [])

    def to_metadata(self, asset_id: str | None = None) -> dict[str, Any]:
        duration = self.duration_s
        return {
            "duration": duration,
            "start_time": _iso(self.start_ns),
            "end_time": _iso(self.end_ns),
            "topic_count": len(self.topics),
            "message_count": self.message_count,
            "sensor_types": self.sensor_types(),
            "topics": [
                {
                    "name": t.name,
                    "message_type": t.message_type,
                    "message_count": t.message_count,
                    "rate_hz": t.rate_hz,
                    "modality": t.modality,
                }
                for t in self.topics
            ],
            "default_episode": {
                "episode_id": f"{asset_id}:default" if asset_id else "default",
                "label": "Episode 1",
                "duration": duration,
            },
            "visualization_summary": {
                "has_visualizable_streams": any(t.modality != "other" for t in self.topics),
                "default_lane_count": sum(1 for t in self.topics if t.modality != "other"),
            },
            "raw_metadata": {
                "compression_format": self.compression_format,
                "file_path": str(self.path),
                "file_size_bytes": self.file_size_bytes,
                "path": str(self.path),
                "ros_version": self.ros_version,
                "storage_format": self.storage_format,
                "index_source": self.index_source,
            },
            "indexing_error": None,
        }


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    dt = datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).replace(microsecond=(ns % 1_000_000_000) // 1000)
    return dt.isoformat().replace("+00:00", "Z")


def compression_label(kinds: set[str]) -> str:
    real = sorted(k for k in kinds if k and k != "none")
    return "+".join(real) if real else "none"
