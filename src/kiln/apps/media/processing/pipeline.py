"""The work of one media item, split into what runs in the CPU process pool (decode, EXIF,
geocode, thumbnail, hashes, ONNX detection) and the async glue that stores the results.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from PIL import Image

from kiln.apps.media.config import MediaSettings
from kiln.apps.media.processing import detection, imaging


def extract_for_worker(
    source: str | bytes, working_size: int | None, max_pixels: int = imaging.DEFAULT_MAX_PIXELS
) -> dict[str, Any]:
    """Runs in a pool process: one decode of the upload gives everything extraction needs.
    The checksum was taken while the upload streamed in, so the bytes are not hashed again."""
    ex = imaging.extract(source, working_size=working_size, checksum=False, max_pixels=max_pixels)
    return {
        "width": ex.width,
        "height": ex.height,
        "mime": ex.mime,
        "phash": ex.phash,
        "lat": ex.lat,
        "lng": ex.lng,
        "altitude": ex.altitude,
        "address": ex.address,
        "make": ex.exif.make,
        "model": ex.exif.model,
        "taken_at": ex.exif.taken_at,
        "exif_empty": ex.exif.empty,
        "technical_metadata": ex.technical_metadata(),
        "thumbnail": ex.thumbnail_jpeg,
        "working_image": ex.working_image,
    }


@lru_cache(maxsize=4)
def _onnx(model_path: str, labels: str | None, conf: float) -> detection.Detector:
    # One session per pool process: loading the model is far slower than running it.
    detector = detection.detector_from_settings(model_path, None, labels=labels, conf_threshold=conf)
    assert detector is not None
    return detector


def detect_onnx(model_path: str, labels: str | None, conf: float, image: Image.Image) -> list[detection.Detection]:
    """Runs in a pool process."""
    return _onnx(model_path, labels, conf).detect(image)


def detector_name(cfg: MediaSettings) -> str | None:
    if cfg.detector_onnx_path:
        return f"onnx:{cfg.detector_onnx_path}"
    if cfg.detector_url:
        return f"http:{cfg.detector_url}"
    return None


async def run_detector(ctx: Any, cfg: MediaSettings, image: Image.Image) -> list[detection.Detection]:
    """Detections from the configured detector (caller checks one is configured)."""
    if cfg.detector_onnx_path:
        return await ctx.run_cpu(
            detect_onnx, cfg.detector_onnx_path, cfg.detector_labels, cfg.detector_conf_threshold, image
        )
    detector = detection.HttpDetector(cfg.detector_url or "")
    return await detector.adetect(image)
