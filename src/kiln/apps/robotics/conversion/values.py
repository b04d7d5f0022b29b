"""Values out of decoded ROS messages: dotted-path lookup and JSON-safe conversion.

rosbags messages are dataclasses with a `__msgtype__` class attribute, numeric arrays
are numpy arrays (often views into the raw buffer), byte data is uint8 arrays.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import numpy as np

_MISSING = object()


def bytes_wrapper(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The JSON form of a byte string used across the robotics payloads."""
    return {"__bytes__": True, "encoding": "base64", "value": base64.b64encode(bytes(data)).decode()}


def is_message(obj: Any) -> bool:
    return dataclasses.is_dataclass(obj) and not isinstance(obj, type)


def message_fields(obj: Any) -> list[str]:
    """Public field names of a message (skips dunder members such as __msgtype__)."""
    return [f.name for f in dataclasses.fields(obj) if not f.name.startswith("__")]


def resolve_path(obj: Any, path: str) -> Any:
    """Follow a dotted path through messages, dicts, lists and arrays; _MISSING if absent."""
    if not path:
        return obj
    cur = obj
    for seg in path.split("."):
        if cur is None:
            return _MISSING
        if seg.lstrip("-").isdigit() and isinstance(cur, list | tuple | np.ndarray):
            i = int(seg)
            if not -len(cur) <= i < len(cur):
                return _MISSING
            cur = cur[i]
        elif isinstance(cur, dict):
            if seg not in cur:
                return _MISSING
            cur = cur[seg]
        elif seg.startswith("__"):
            return _MISSING
        else:
            cur = getattr(cur, seg, _MISSING)
            if cur is _MISSING:
                return _MISSING
    return cur


def resolve_parent(obj: Any, path: str) -> Any:
    """The container of the last path segment (used to find an image around its `data`)."""
    head, _, _ = path.rpartition(".")
    return resolve_path(obj, head)


def is_missing(value: Any) -> bool:
    return value is _MISSING


def to_jsonable(value: Any, *, max_depth: int | None = None, max_items: int | None = None, _depth: int = 0) -> Any:
    """Plain JSON data: messages -> dicts (no dunder keys), numpy -> lists, bytes -> wrapper.

    With `max_depth`/`max_items` the result is a bounded summary (inspection samples).
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return bytes_wrapper(data if max_items is None else data[: max_items * 16])
    if isinstance(value, np.ndarray):
        if value.dtype == np.uint8:
            return to_jsonable(
                value.tobytes() if max_items is None else value[: max_items * 16].tobytes(), max_items=max_items
            )
        if max_depth is not None and _depth >= max_depth:
            return {"__array__": True, "dtype": str(value.dtype), "shape": list(value.shape)}
        flat = value if max_items is None else value.reshape(-1)[:max_items]
        return flat.tolist()
    if max_depth is not None and _depth >= max_depth:
        if is_message(value):
            return {"__truncated__": True, "type": getattr(value, "__msgtype__", type(value).__name__)}
        if isinstance(value, list | tuple | dict):
            return {"__truncated__": True, "length": len(value)}
    if is_message(value):
        return {
            k: to_jsonable(getattr(value, k), max_depth=max_depth, max_items=max_items, _depth=_depth + 1)
            for k in message_fields(value)
        }
    if isinstance(value, dict):
        return {
            str(k): to_jsonable(v, max_depth=max_depth, max_items=max_items, _depth=_depth + 1)
            for k, v in value.items()
            if not str(k).startswith("__") or k == "__bytes__"
        }
    if isinstance(value, list | tuple):
        items = value if max_items is None else value[:max_items]
        return [to_jsonable(v, max_depth=max_depth, max_items=max_items, _depth=_depth + 1) for v in items]
    return str(value)


def is_image_message(obj: Any) -> bool:
    """Raw image (height/width/data, with or without `encoding`: custom raw messages such as
    RawImageBGRA have none) or compressed image (format/data)."""
    if is_message(obj) or isinstance(obj, dict):
        get = (lambda k: k in obj) if isinstance(obj, dict) else (lambda k: hasattr(obj, k))
        if get("point_step") or get("fields"):  # a point cloud also has height/width/data
            return False
        return get("data") and ((get("height") and get("width")) or get("format"))
    return False
