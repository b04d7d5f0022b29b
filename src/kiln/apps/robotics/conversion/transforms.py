"""Feature transforms: numeric (cast, clamp, length, normalize, scale, one/multi-hot) and images.

Each transform takes and returns a value (numpy array, scalar, bytes or an image). Images
enter as a raw image message, a HxWxC array or encoded bytes and leave as a HxWxC uint8
array, except `image_encode` which returns encoded bytes.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from kiln.apps.robotics.conversion.values import is_image_message
from kiln.apps.robotics.spec.models import TransformSpec

_NP = {"int64": np.int64, "float32": np.float32, "float64": np.float64, "bool": np.bool_,
       "uint8": np.uint8, "int32": np.int32}
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8uc1": 1, "8uc3": 3}


class TransformError(ValueError):
    pass


def _array(v: Any) -> np.ndarray:
    if isinstance(v, bytes | bytearray | memoryview):
        return np.frombuffer(v, dtype=np.uint8)
    return np.asarray(v)


def _back(arr: np.ndarray, original: Any) -> Any:
    return arr if isinstance(original, np.ndarray | list | tuple) or arr.ndim else arr.item()


def to_image(v: Any) -> tuple[np.ndarray, str]:
    """(HxWxC uint8 array, channel order) from an image message, array or encoded bytes."""
    if is_image_message(v):
        def has(k: str) -> bool:
            return (k in v) if isinstance(v, dict) else hasattr(v, k)

        def get(k: str) -> Any:
            return v[k] if isinstance(v, dict) else getattr(v, k)

        if has("encoding"):
            enc = str(get("encoding")).lower()
            if enc not in _CHANNELS:
                raise TransformError(f"unsupported image encoding: {enc}")
            h, w, c = int(get("height")), int(get("width")), _CHANNELS[enc]
            step = int(get("step")) if has("step") else w * c
            raw = _array(get("data"))
            arr = raw[: h * step].reshape(h, step)[:, : w * c].reshape(h, w, c)
            return arr, ("bgr" if enc.startswith("bgr") else "rgb")
        v = get("data")  # compressed image: decode below
    if isinstance(v, np.ndarray) and v.ndim in (2, 3):
        return (v if v.ndim == 3 else v[:, :, None]), "rgb"
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(bytes(_array(v).tobytes())))
        return np.asarray(img.convert("RGB")), "rgb"
    except Exception as exc:
        raise TransformError(f"value is not a decodable image: {exc}") from exc


def apply_transforms(value: Any, transforms: list[TransformSpec]) -> Any:
    for t in transforms:
        if value is None:
            return None
        value = _apply(value, t.kind, t.params)
    return value


def _apply(v: Any, kind: str, p: dict[str, Any]) -> Any:  # noqa: C901 - one dispatch table
    if kind == "cast":
        dt = _NP.get(str(p.get("dtype", "float32")))
        if dt is None:
            raise TransformError(f"cast: unsupported dtype {p.get('dtype')}")
        return _back(_array(v).astype(dt), v)
    if kind == "clamp":
        return _back(np.clip(_array(v), p.get("min"), p.get("max")), v)
    if kind == "scale":
        factor = p.get("scale", p.get("factor", 1.0))
        return _back(_array(v) * factor + p.get("offset", 0.0), v)
    if kind == "normalize":
        a = _array(v).astype(np.float64)
        if "mean" in p or "std" in p:
            std = p.get("std", 1.0) or 1.0
            out = (a - p.get("mean", 0.0)) / std
        else:
            lo, hi = p.get("min", 0.0), p.get("max", 1.0)
            out = (a - lo) / ((hi - lo) or 1.0)
        return _back(out * p.get("scale", 1.0), v)
    if kind == "length":
        a = _array(v).reshape(-1)
        if "exact" in p:
            n = int(p["exact"])
            if len(a) != n:
                if len(a) > n:
                    raise TransformError(f"length: expected {n} items, got {len(a)}")
                a = np.concatenate([a, np.full(n - len(a), p.get("pad_value", 0), dtype=a.dtype)])
        if "pad_to" in p and len(a) < int(p["pad_to"]):
            a = np.concatenate([a, np.full(int(p["pad_to"]) - len(a), p.get("pad_value", 0), dtype=a.dtype)])
        if "truncate_to" in p:
            a = a[: int(p["truncate_to"])]
        if "min" in p and len(a) < int(p["min"]):
            raise TransformError(f"length: at least {p['min']} items required, got {len(a)}")
        if "max" in p and len(a) > int(p["max"]):
            raise TransformError(f"length: at most {p['max']} items allowed, got {len(a)}")
        return a
    if kind in ("one_hot", "multi_hot"):
        depth = int(p.get("depth", p.get("size", 0)))
        if depth <= 0:
            raise TransformError(f"{kind}: depth must be > 0")
        idx = _array(v).astype(np.int64).reshape(-1)
        if kind == "one_hot" and idx.size != 1:
            raise TransformError("one_hot: expected a single index")
        if ((idx < 0) | (idx >= depth)).any():
            raise TransformError(f"{kind}: index out of range for depth {depth}")
        out = np.zeros(depth, dtype=np.int64)
        out[idx] = 1
        return out
    if kind.startswith("image_"):
        return _image(v, kind, p)
    raise TransformError(f"unknown transform: {kind}")


def _image(v: Any, kind: str, p: dict[str, Any]) -> Any:
    arr, order = to_image(v)
    if kind == "image_color_convert":
        src = str(p.get("from", order)).lower()
        dst = str(p.get("to", "rgb")).lower()
        if src[:3] != dst[:3] and {src[:3], dst[:3]} <= {"rgb", "bgr"}:
            arr = arr[:, :, [2, 1, 0] + list(range(3, arr.shape[2]))]
        if dst in ("rgb", "bgr") and arr.shape[2] == 4:
            arr = arr[:, :, :3]
        elif dst in ("rgba", "bgra") and arr.shape[2] == 3:
            arr = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], axis=2)
        elif dst in ("gray", "mono", "mono8") and arr.shape[2] >= 3:
            arr = (arr[:, :, :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[:, :, None]
        return np.ascontiguousarray(arr)
    if kind == "image_crop":
        x, y = int(p.get("x", p.get("left", 0))), int(p.get("y", p.get("top", 0)))
        w, h = int(p.get("width", arr.shape[1] - x)), int(p.get("height", arr.shape[0] - y))
        return np.ascontiguousarray(arr[y:y + h, x:x + w])
    from PIL import Image

    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    if kind == "image_resize":
        size = (int(p["width"]), int(p["height"])) if "width" in p else tuple(p.get("size", img.size))
        return np.asarray(img.resize(size, Image.Resampling.BILINEAR))
    if kind == "image_encode":
        fmt = str(p.get("format", "png")).upper().replace("JPG", "JPEG")
        buf = io.BytesIO()
        img.save(buf, format=fmt, **({"quality": int(p["quality"])} if "quality" in p else {}))
        return buf.getvalue()
    raise TransformError(f"unknown transform: {kind}")
