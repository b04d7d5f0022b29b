"""Object detection port for the media pipeline ("is there trash in this photo?").

Offers
* ``Detection(label, confidence, bbox)`` — confidence 0..1, bbox ``(x1, y1, x2, y2)`` in pixels
  of the image that was given to the detector; ``normalized(w, h)`` gives the stored
  ``{x, y, w, h}`` 0..1 form;
* ``Detector`` — the protocol: ``name`` and ``detect(image: PIL.Image) -> list[Detection]``;
* ``OnnxYoloDetector(model_path)`` — a YOLOv8-style ONNX model (output ``[1, 4+C, N]``:
  cx, cy, w, h then one score per class) run by onnxruntime, with letterboxing, a confidence
  threshold and per-class NMS in numpy;
* ``HttpDetector(url)`` — a remote detector speaking the protocol below;
* ``detector_from_settings(onnx_path, url) -> Detector | None`` — None means "no detector
  configured": the pipeline skips the step and records that, it never invents results;
* ``summarize(detections) -> TrashSummary`` — ``has_trash`` / ``confidence`` / counts.

HTTP detector protocol: ``POST <url>`` with a multipart form whose field ``file`` holds the
image (JPEG). Answer 200 ``{"detections": [{"label": str, "confidence": 0..1,
"bbox": [x1, y1, x2, y2]}]}`` with pixel coordinates of the posted image. Any other status or
shape is an error (``DetectorError``); connection failures and 429/5xx are
``DetectorUnavailable`` so a job can retry later.
"""

from __future__ import annotations

import ast
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

# Labels that mean litter: the reference's five classes plus TACO's top-10 classes.
TRASH_LABELS = frozenset(
    {
        "trash",
        "plastic",
        "metal",
        "glass",
        "paper",
        "cardboard",
        "litter",
        "rubbish",
        "bottle",
        "bottle cap",
        "can",
        "cigarette",
        "cup",
        "lid",
        "other",
        "plastic bag + wrapper",
        "plastic bag",
        "wrapper",
        "pop tab",
        "straw",
        "carton",
    }
)
_ALIASES = {"rubbish": "trash", "litter": "trash", "garbage": "trash", "waste": "trash"}


class DetectorError(RuntimeError):
    """The detector failed or answered something unusable."""


class DetectorUnavailable(DetectorError):
    """The detector could not be reached or is overloaded: worth retrying later."""


@dataclass(frozen=True, slots=True)
class Detection:
    label: str
    confidence: float
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels

    def normalized(self, width: int, height: int) -> dict[str, float]:
        x1, y1, x2, y2 = self.bbox
        return {
            "x": round(x1 / width, 6),
            "y": round(y1 / height, 6),
            "w": round((x2 - x1) / width, 6),
            "h": round((y2 - y1) / height, 6),
        }


@runtime_checkable
class Detector(Protocol):
    name: str

    def detect(self, image: Image.Image) -> list[Detection]: ...


@dataclass(frozen=True, slots=True)
class TrashSummary:
    has_trash: bool
    confidence: float  # highest trash-detection confidence, 0..1 (0 when none)
    detections_count: int  # all detections, trash or not
    trash_count: int


def normalize_label(label: str) -> str:
    key = " ".join(str(label).strip().lower().split())
    return _ALIASES.get(key, key)


def summarize(detections: Sequence[Detection], trash_labels: Iterable[str] | None = TRASH_LABELS) -> TrashSummary:
    """Trash verdict for a photo. ``trash_labels=None`` counts every detection as trash
    (for a single-purpose litter model whose classes are all litter)."""
    wanted = None if trash_labels is None else {normalize_label(x) for x in trash_labels}
    trash = [d for d in detections if wanted is None or normalize_label(d.label) in wanted]
    return TrashSummary(
        has_trash=bool(trash),
        confidence=round(max((d.confidence for d in trash), default=0.0), 4),
        detections_count=len(detections),
        trash_count=len(trash),
    )


# ---------------------------------------------------------------- numpy post-processing


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first."""
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.array(keep, dtype=np.int64)


def letterbox(image: Image.Image, size: tuple[int, int]) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize keeping aspect ratio into ``size`` (w, h), pad with YOLO's grey (114).

    Returns the NCHW float32 0..1 tensor, the scale, and the (x, y) padding, so boxes can be
    mapped back with ``(v - pad) / scale``.
    """
    tw, th = size
    scale = min(tw / image.width, th / image.height)
    nw, nh = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    resized = image.convert("RGB").resize((nw, nh), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (tw, th), (114, 114, 114))
    pad = ((tw - nw) // 2, (th - nh) // 2)
    canvas.paste(resized, pad)
    tensor = np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
    return np.ascontiguousarray(tensor), scale, (float(pad[0]), float(pad[1]))


def decode_yolo(
    output: np.ndarray, names: Sequence[str], *, conf_threshold: float, iou_threshold: float, max_detections: int
) -> list[tuple[int, float, np.ndarray]]:
    """YOLOv8 head ``[1, 4+C, N]`` -> (class, score, xyxy in model-input pixels) after NMS."""
    pred = np.asarray(output, dtype=np.float32)
    if pred.ndim == 3:
        pred = pred[0]
    if pred.ndim != 2:
        raise DetectorError(f"unexpected YOLO output shape {output.shape}")
    n_classes = len(names) if names else pred.shape[0] - 4
    if pred.shape[0] != 4 + n_classes and pred.shape[1] == 4 + n_classes:
        pred = pred.T  # some exports put anchors first: [N, 4+C]
    if pred.shape[0] != 4 + n_classes:
        raise DetectorError(f"YOLO output has {pred.shape[0]} rows, expected 4 + {n_classes} classes")
    scores_all = pred[4:]
    cls = scores_all.argmax(axis=0)
    scores = scores_all[cls, np.arange(pred.shape[1])]
    mask = scores >= conf_threshold
    if not mask.any():
        return []
    cx, cy, w, h = pred[:4, mask]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    scores, cls = scores[mask], cls[mask]
    # Class-aware NMS in one pass: shift each class into its own coordinate range.
    offset = cls[:, None].astype(np.float32) * (float(np.abs(boxes).max()) + 1.0)
    keep = nms(boxes + offset, scores, iou_threshold)[:max_detections]
    return [(int(cls[i]), float(scores[i]), boxes[i]) for i in keep]


def _parse_names(raw: Any) -> list[str] | None:
    """Class names from Ultralytics metadata (``"{0: 'person', ...}"``), JSON, or a list."""
    if raw is None:
        return None
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            try:
                value = ast.literal_eval(raw)  # literals only: safe on untrusted text
            except (ValueError, SyntaxError):
                return None
    if isinstance(value, dict):
        try:
            return [str(value[k]) for k in sorted(value, key=int)]
        except (TypeError, ValueError):
            return None
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return None


def load_labels(path: str | Path) -> list[str]:
    """A labels file: JSON (list or {index: name}) or plain text, one name per line."""
    text = Path(path).read_text(encoding="utf-8")
    names = _parse_names(text) if text.lstrip()[:1] in "[{" else None
    return names if names is not None else [line.strip() for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------- adapters


class OnnxYoloDetector:
    """YOLOv8-format ONNX model on onnxruntime (CPU unless ``providers`` says otherwise)."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        labels: str | Path | Sequence[str] | None = None,
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        max_detections: int = 300,
        providers: Sequence[str] | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise DetectorError("the ONNX detector needs onnxruntime: pip install 'kiln[media]'") from None
        path = Path(model_path)
        if not path.is_file():
            raise DetectorError(f"ONNX model not found: {path}")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as exc:  # noqa: BLE001 — onnxruntime raises its own opaque types
            raise DetectorError(f"cannot load ONNX model {path.name}: {exc}") from None
        self._input = self._session.get_inputs()[0]
        shape = self._input.shape
        # Static H, W from the graph when it has them; 640 is the YOLOv8 training size.
        h = shape[2] if len(shape) == 4 and isinstance(shape[2], int) else 640
        w = shape[3] if len(shape) == 4 and isinstance(shape[3], int) else 640
        self.input_size = (int(w), int(h))
        if labels is None:
            meta = self._session.get_modelmeta().custom_metadata_map
            names = _parse_names(meta.get("names"))
        elif isinstance(labels, (str, Path)):
            names = load_labels(labels)
        else:
            names = [str(x) for x in labels]
        if not names:
            raise DetectorError("no class names: the model has no 'names' metadata; pass labels=")
        self.names = names
        self.conf_threshold, self.iou_threshold = conf_threshold, iou_threshold
        self.max_detections = max_detections
        self.name = f"onnx:{path.name}"

    def detect(self, image: Image.Image) -> list[Detection]:
        tensor, scale, (px, py) = letterbox(image, self.input_size)
        output = self._session.run(None, {self._input.name: tensor})[0]
        found = decode_yolo(
            output,
            self.names,
            conf_threshold=self.conf_threshold,
            iou_threshold=self.iou_threshold,
            max_detections=self.max_detections,
        )
        result = []
        for cls, score, (x1, y1, x2, y2) in found:
            # Undo the letterbox, then clip to the original image.
            bx1 = float(np.clip((x1 - px) / scale, 0, image.width))
            by1 = float(np.clip((y1 - py) / scale, 0, image.height))
            bx2 = float(np.clip((x2 - px) / scale, 0, image.width))
            by2 = float(np.clip((y2 - py) / scale, 0, image.height))
            if bx2 <= bx1 or by2 <= by1:
                continue  # box lay entirely in the padding
            label = self.names[cls] if cls < len(self.names) else str(cls)
            box = (round(bx1, 2), round(by1, 2), round(bx2, 2), round(by2, 2))
            result.append(Detection(label, round(score, 4), box))
        return result


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def parse_response(payload: Any) -> list[Detection]:
    """Validate a detector service answer (see the module docstring)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("detections"), list):
        raise DetectorError("detector answer has no 'detections' list")
    out = []
    for item in payload["detections"]:
        try:
            label = str(item["label"])
            confidence = float(item["confidence"])
            x1, y1, x2, y2 = (float(v) for v in item["bbox"])
        except (KeyError, TypeError, ValueError):
            raise DetectorError(f"malformed detection: {item!r:.200}") from None
        if not 0.0 <= confidence <= 1.0:
            raise DetectorError(f"confidence {confidence} is not within 0..1")
        out.append(Detection(label, confidence, (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))))
    return out


class HttpDetector:
    """Client of a detector service (protocol in the module docstring)."""

    def __init__(self, url: str, *, timeout: float = 30.0, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.name = f"http:{url}"

    def _check(self, response: Any) -> list[Detection]:
        if response.status_code == 429 or response.status_code >= 500:
            raise DetectorUnavailable(f"detector answered {response.status_code}")
        if response.status_code != 200:
            raise DetectorError(f"detector answered {response.status_code}: {response.text[:200]}")
        try:
            return parse_response(response.json())
        except ValueError:
            raise DetectorError("detector answer is not JSON") from None

    def detect(self, image: Image.Image) -> list[Detection]:
        import httpx

        files = {"file": ("image.jpg", _jpeg(image), "image/jpeg")}
        try:
            response = httpx.post(self.url, files=files, headers=self.headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise DetectorUnavailable(f"detector unreachable: {exc}") from None
        return self._check(response)

    async def adetect(self, image: Image.Image) -> list[Detection]:
        """Same as ``detect`` without blocking the event loop."""
        import httpx

        files = {"file": ("image.jpg", _jpeg(image), "image/jpeg")}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(self.url, files=files, headers=self.headers)
        except httpx.HTTPError as exc:
            raise DetectorUnavailable(f"detector unreachable: {exc}") from None
        return self._check(response)


def detector_from_settings(
    onnx_path: str | Path | None, url: str | None, *, labels: str | Path | None = None, conf_threshold: float = 0.25
) -> Detector | None:
    """The configured detector: a local ONNX model wins over a URL; neither gives None."""
    if onnx_path:
        return OnnxYoloDetector(onnx_path, labels=labels, conf_threshold=conf_threshold)
    if url:
        return HttpDetector(url)
    return None
