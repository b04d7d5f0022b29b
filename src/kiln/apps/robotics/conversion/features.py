"""Build a row's feature values: source -> missing policy -> transforms -> shape -> dtype.

Values leave here typed for the writers: numpy scalars/arrays for numeric dtypes, a bytes
or uint8 array for `bytes`, JSON-safe python data for `json`, None when missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kiln.apps.robotics.conversion.rows import ZEROS, Const, Interp, Msg, Row
from kiln.apps.robotics.conversion.transforms import apply_transforms
from kiln.apps.robotics.conversion.values import (
    is_image_message,
    is_missing,
    resolve_parent,
    resolve_path,
    to_jsonable,
)
from kiln.apps.robotics.spec.models import (
    ConcatSource,
    ConstantSource,
    ConversionSpec,
    FeatureSpec,
    MetadataSource,
    PathSource,
    StackSource,
)

NUMERIC = {"int64": np.int64, "float32": np.float32, "float64": np.float64, "bool": np.bool_}
_ABSENT = object()
_ZERO = object()


class FeatureError(ValueError):
    pass


class RowDropped(Exception):
    """A feature with missing="drop" had no value."""


@dataclass
class FeatureCounters:
    missing: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)


def zeros_for(feature: FeatureSpec) -> Any:
    shape = [max(d, 0) for d in (feature.shape or [])]
    if feature.dtype in NUMERIC:
        return np.zeros(shape, dtype=NUMERIC[feature.dtype]) if shape else NUMERIC[feature.dtype](0)
    if feature.dtype == "bytes":
        return b""
    return [0] * shape[0] if len(shape) == 1 else 0


def _numeric(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int | float | np.number):
        return True
    return isinstance(v, np.ndarray) and v.dtype.kind in "iuf"


def interpolate_value(a: Any, b: Any, alpha: float) -> Any:
    """Linear interpolation of numeric leaves; anything else keeps the earlier sample."""
    if _numeric(a) and _numeric(b) and np.shape(a) == np.shape(b):
        out = np.asarray(a, dtype=np.float64) + alpha * (np.asarray(b, dtype=np.float64) - np.asarray(a, np.float64))
        return out if isinstance(a, np.ndarray) else float(out)
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: interpolate_value(v, b[k], alpha) if k in b else v for k, v in a.items()}
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [interpolate_value(x, y, alpha) for x, y in zip(a, b, strict=True)]
    return a


class FeatureBuilder:
    """Evaluates every feature of a spec for one row at a time (keeps forward-fill state)."""

    def __init__(self, spec: ConversionSpec):
        self.features = spec.features
        self.counters = FeatureCounters()
        self._last: dict[str, Any] = {}
        self._image_parent = {
            name: isinstance(f.source, PathSource)
            and f.source.field_path.split(".")[-1] == "data"
            and any(t.kind.startswith("image_") for t in f.transforms)
            for name, f in self.features.items()
        }

    def build(self, row: Row) -> tuple[dict[str, Any], dict[str, int], bool]:
        """(values, presence 0/1, bad). Raises RowDropped or FeatureError (missing="error")."""
        values: dict[str, Any] = {}
        presence: dict[str, int] = {}
        bad = False
        for name, f in self.features.items():
            try:
                raw = self._source(f.source, row, self._image_parent[name])
                present = raw is not _ABSENT and raw is not _ZERO and raw is not None
                if present:
                    value = apply_transforms(raw, f.transforms)
                    value = self._check(f, value)
                else:
                    value = self._missing(name, f, raw is _ZERO)
            except (RowDropped, FeatureErrorFatal):
                raise
            except Exception as exc:
                self._count_error(name, row.timestamp_ns, exc)
                present, value = False, self._missing(name, f, False, failed=True)
            if not present:
                self.counters.missing[name] = self.counters.missing.get(name, 0) + 1
                if f.required and f.missing != "zeros" and value is None:
                    bad = True
            else:
                self._last[name] = value
            values[name] = value
            presence[name] = int(present)
        return values, presence, bad

    def _count_error(self, name: str, t: int, exc: Exception) -> None:
        self.counters.errors[name] = self.counters.errors.get(name, 0) + 1
        if len(self.counters.first_errors) < 20:
            self.counters.first_errors.append(f"feature {name} at {t} ns: {exc}")

    def _missing(self, name: str, f: FeatureSpec, zeros: bool, failed: bool = False) -> Any:
        if f.missing == "error" and not failed:
            raise FeatureErrorFatal(f"feature {name} has no value")
        if f.missing == "drop":
            raise RowDropped(name)
        if zeros or f.missing == "zeros":
            return zeros_for(f)
        if f.missing == "forward_fill":
            return self._last.get(name)
        return None

    def _source(self, src: Any, row: Row, image_parent: bool = False) -> Any:
        if isinstance(src, PathSource):
            entry = row.topics.get(src.topic)
            if entry is None:
                return _ABSENT
            if entry is ZEROS:
                return _ZERO
            if isinstance(entry, Const):
                got = resolve_path(entry.value, src.field_path) if isinstance(entry.value, dict | list) else entry.value
                return _ABSENT if is_missing(got) else got
            if isinstance(entry, Interp):
                a, b = (self._at(m, src.field_path, image_parent) for m in (entry.before, entry.after))
                if a is _ABSENT or b is _ABSENT:
                    return a
                if image_parent or not (_numeric(a) and _numeric(b)):
                    if isinstance(a, dict) or isinstance(b, dict):
                        return interpolate_value(to_jsonable(a), to_jsonable(b), entry.alpha)
                    return a
                return interpolate_value(a, b, entry.alpha)
            return self._at(entry, src.field_path, image_parent)
        if isinstance(src, ConstantSource):
            return src.value
        if isinstance(src, MetadataSource):
            if src.key == "timestamp_ns":
                return np.int64(row.timestamp_ns)
            present = sorted(t for t, v in row.topics.items() if isinstance(v, Msg | Interp))
            return present or src.default_value
        if isinstance(src, ConcatSource | StackSource):
            parts = [self._source(s, row) for s in src.sources]
            if any(p is _ABSENT or p is _ZERO or p is None for p in parts):
                return _ABSENT
            arrays = [np.atleast_1d(np.asarray(p)) for p in parts]
            return (
                np.concatenate(arrays, axis=src.axis)
                if isinstance(src, ConcatSource)
                else np.stack(arrays, axis=src.axis)
            )
        raise FeatureError(f"unsupported source {src!r}")

    @staticmethod
    def _at(msg: Msg, path: str, image_parent: bool) -> Any:
        obj = msg.value()
        if obj is None:
            return _ABSENT
        if image_parent:
            parent = resolve_parent(obj, path)
            if not is_missing(parent) and is_image_message(parent):
                return parent
        got = resolve_path(obj, path)
        return _ABSENT if is_missing(got) else got

    @staticmethod
    def _check(f: FeatureSpec, value: Any) -> Any:
        if f.shape is not None and f.dtype != "bytes":
            arr = np.asarray(value)
            if arr.ndim != len(f.shape) or any(d not in (-1, n) for d, n in zip(f.shape, arr.shape, strict=False)):
                if arr.size == int(np.prod([d for d in f.shape])) and -1 not in f.shape:
                    value = arr.reshape(f.shape)
                else:
                    raise FeatureError(f"shape {list(arr.shape)} does not match {f.shape}")
        return coerce(f.dtype, value)


class FeatureErrorFatal(FeatureError):
    """A feature with missing="error" has no value: the conversion stops."""


def coerce(dtype: str, value: Any) -> Any:
    if dtype in NUMERIC:
        if isinstance(value, str | bytes | dict):
            raise FeatureError(f"cannot convert {type(value).__name__} to {dtype}")
        arr = np.asarray(value)
        if arr.dtype == object:
            raise FeatureError(f"cannot convert a ragged or mixed value to {dtype}")
        if dtype != "bool" and arr.dtype.kind == "f" and dtype == "int64" and not np.all(np.isfinite(arr)):
            raise FeatureError("non-finite value for int64")
        arr = arr.astype(NUMERIC[dtype], copy=False)
        return arr if arr.ndim else arr[()]
    if dtype == "bytes":
        if isinstance(value, bytes):
            return value
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
        if isinstance(value, str):
            return value.encode()
        arr = np.asarray(value)
        if arr.dtype == np.uint8:
            return np.ascontiguousarray(arr).reshape(-1)  # zero-copy until the writer packs it
        if arr.dtype.kind in "iu" and arr.size and (arr.min() >= 0 and arr.max() <= 255):
            return arr.astype(np.uint8).reshape(-1)
        if arr.dtype.kind in "iu" and not arr.size:
            return b""
        raise FeatureError("value cannot be represented as bytes")
    return to_jsonable(value)
