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

_NP = {
    "int64": np.int64,
    "float32": np.float32,
    "float64": np.float64,
    "bool": np.bool_,
    "uint8": np.uint8,
    "int32": np.int32,
}
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8uc1": 1, "8uc3": 3}


class TransformError(ValueError):
    pass


def _array(v: Any) -> np.ndarray:
    if isinstance(v, bytes | bytearray | memoryview):
        return np.frombuffer(v, dtype=np.uint8)
    return np.asarray(v)


def _back(arr: np.ndarray, original: Any) -> Any:
    return arr if isinstance(original, np.ndarray | list | tuple) or arr.ndim else arr.item()


_ORDER_CHANNELS = {"gray": 1, "grey": 1, "mono": 1, "l": 1, "rgb": 3, "bgr": 3, "rgba": 4, "bgra": 4}
_ENCODED_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*")


def _looks_encoded(buf: np.ndarray) -> bool:
    head = buf[:8].tobytes()
    return any(head.startswith(m) for m in _ENCODED_MAGIC)


def _raw_pixels(
    raw: np.ndarray, h: int | None, w: int | None, channels: int | None, step: int | None = None
) -> np.ndarray:
    """Raw pixel bytes -> HxWxC, from what is known about the layout (message fields or params)."""
    if h and w:
        row = step or (raw.size // h)
        c = channels or max(min(row // w, 4), 1)
        if raw.size < h * row or row < w * c:
            raise TransformError(f"raw image of {raw.size} bytes does not hold {h}x{w}x{c} pixels")
        return raw[: h * row].reshape(h, row)[:, : w * c].reshape(h, w, c)
    c = channels or 1
    if raw.size % c:
        raise TransformError(f"raw image of {raw.size} bytes is not a whole number of {c}-channel pixels")
    return raw.reshape(1, raw.size // c, c)


def to_image(v: Any, params: dict[str, Any] | None = None) -> tuple[np.ndarray, str]:
    """(HxWxC uint8 array, channel order) from an image message, array, raw pixels or encoded bytes.

    Raw images (an `encoding` such as rgb8/bgra8/mono8, or a custom message with height, width
    and data) are reshaped as pixels, never opened as an image file; only compressed images
    and bytes that start like an image file are decoded."""
    p = params or {}
    order = str(p.get("from", "")).lower()
    if is_image_message(v):

        def has(k: str) -> bool:
            return (k in v) if isinstance(v, dict) else hasattr(v, k)

        def get(k: str) -> Any:
            return v[k] if isinstance(v, dict) else getattr(v, k)

        if has("height") and has("width"):
            enc = str(get("encoding")).lower() if has("encoding") else ""
            if enc and enc not in _CHANNELS:
                raise TransformError(f"unsupported image encoding: {enc}")
            channels = _CHANNELS.get(enc) or _ORDER_CHANNELS.get(order)
            raw = _array(get("data")).reshape(-1)
            arr = _raw_pixels(
                raw,
                int(get("height")),
                int(get("width")),
                channels,
                int(get("step")) if has("step") and int(get("step")) else None,
            )
            named = enc[:4] if enc[:4] in ("bgra", "rgba") else enc[:3]
            return arr, (named if named in ("rgb", "bgr", "rgba", "bgra") else order or "rgb")
        v = get("data")  # compressed image: decode below
    if isinstance(v, np.ndarray) and v.ndim in (2, 3):
        return (v if v.ndim == 3 else v[:, :, None]), order or "rgb"
    buf = _array(v).reshape(-1).astype(np.uint8, copy=False)
    if not _looks_encoded(buf):
        h, w = p.get("height"), p.get("width")
        channels = p.get("channels") or _ORDER_CHANNELS.get(order)
        return _raw_pixels(
            buf, int(h) if h else None, int(w) if w else None, int(channels) if channels else None
        ), order or "rgb"
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(buf.tobytes()))
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
    arr, order = to_image(v, p if kind == "image_color_convert" else None)
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
        return np.ascontiguousarray(arr[y : y + h, x : x + w])
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
