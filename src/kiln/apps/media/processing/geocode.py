"""Offline reverse geocoding: (lat, lng) -> nearest populated place, no outside service.

Offers ``reverse_geocode(lat, lng) -> Place | None`` (module-wide shared index) and the
``ReverseGeocoder`` class behind it. ``Place.address`` reads as the reference's Nominatim
lookup did: ``"<city|town|village>, <country>"``, the place as GeoNames writes it (UTF-8) and
the country's English name, e.g. ``"Budapest XI. kerület, Hungary"``, ``"São Paulo, Brazil"``.

Data: ``data/places.npz`` — every GeoNames place with population >= 1000 (~145k rows, 2 MB),
built by ``data/build_places.py``. Lookup: a KD-tree over unit vectors on the sphere, built
with numpy at first use (~0.3 s) and queried in pure Python (tens of microseconds), so the
antimeridian and the poles need no special cases and the runtime needs no extra package.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EARTH_RADIUS_KM = 6371.0088
DATA_FILE = Path(__file__).with_name("data") / "places.npz"
_LEAF_SIZE = 24


@dataclass(frozen=True, slots=True)
class Place:
    name: str
    admin1: str  # region / state / province; "" when GeoNames has none
    country_code: str  # ISO 3166-1 alpha-2
    country: str  # country name in English
    lat: float
    lng: float
    distance_km: float  # great-circle distance from the query point

    @property
    def address(self) -> str:
        return f"{self.name}, {self.country}" if self.country else self.name


def _to_xyz(lat: np.ndarray, lng: np.ndarray) -> np.ndarray:
    la, lo = np.radians(lat.astype(np.float64)), np.radians(lng.astype(np.float64))
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)


def _chord_to_km(chord: float) -> float:
    return 2.0 * EARTH_RADIUS_KM * math.asin(min(1.0, chord / 2.0))


class _KDTree:
    """Static 3-D KD-tree. Points are reordered so every leaf is a contiguous slice."""

    def __init__(self, points: np.ndarray) -> None:
        self.order = np.arange(len(points))
        self.points = points
        # node arrays: split axis (-1 for a leaf), split value, children, leaf slice
        self.axis: list[int] = []
        self.split: list[float] = []
        self.left: list[int] = []
        self.right: list[int] = []
        self.start: list[int] = []
        self.stop: list[int] = []
        self._build(0, len(points))
        self.points = points[self.order]
        self._xyz = self.points.tolist()  # python floats: faster scalar math in queries

    def _new_node(self, start: int, stop: int) -> int:
        for arr, val in ((self.axis, -1), (self.split, 0.0), (self.left, -1), (self.right, -1)):
            arr.append(val)
        self.start.append(start)
        self.stop.append(stop)
        return len(self.axis) - 1

    def _build(self, start: int, stop: int) -> int:
        node = self._new_node(start, stop)
        if stop - start <= _LEAF_SIZE:
            return node
        idx = self.order[start:stop]
        pts = self.points[idx]
        axis = int(np.argmax(pts.max(axis=0) - pts.min(axis=0)))
        mid = (stop - start) // 2
        part = np.argpartition(pts[:, axis], mid)
        self.order[start:stop] = idx[part]
        self.axis[node] = axis
        self.split[node] = float(pts[part[mid], axis])
        left = self._build(start, start + mid)
        right = self._build(start + mid, stop)
        self.left[node], self.right[node] = left, right
        return node

    def nearest(self, q: tuple[float, float, float]) -> tuple[int, float]:
        """Index (into the original order) and squared chord distance of the nearest point."""
        best_i, best_d = -1, math.inf
        stack = [(0, 0.0)]
        xyz, axis_of, split_of = self._xyz, self.axis, self.split
        while stack:
            node, bound = stack.pop()
            if bound >= best_d:
                continue
            axis = axis_of[node]
            if axis < 0:
                for i in range(self.start[node], self.stop[node]):
                    p = xyz[i]
                    d = (p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 + (p[2] - q[2]) ** 2
                    if d < best_d:
                        best_i, best_d = i, d
                continue
            diff = q[axis] - split_of[node]
            lo, hi = self.left[node], self.right[node]
            near, far = (lo, hi) if diff < 0 else (hi, lo)
            # far side can only hold points at least |diff| away along this axis
            stack.append((far, max(bound, diff * diff)))
            stack.append((near, bound))
        return int(self.order[best_i]), best_d


def _split_blob(arr: np.ndarray) -> list[str]:
    return arr.tobytes().decode("utf-8").split("\n")


class ReverseGeocoder:
    """Nearest-place lookup over a places table (default: the shipped GeoNames extract)."""

    def __init__(self, data_file: Path | str = DATA_FILE) -> None:
        with np.load(data_file, allow_pickle=False) as data:
            self._lat = data["lat"].astype(np.float64)
            self._lng = data["lng"].astype(np.float64)
            self._country = data["country"]
            self._admin1 = data["admin1"]
            self._names = _split_blob(data["names"])
            self._admin1_names = _split_blob(data["admin1_names"])
            self._cc = _split_blob(data["country_codes"])
            self._country_names = _split_blob(data["country_names"])
        if not (len(self._names) == len(self._lat) == len(self._lng)):
            raise ValueError(f"{data_file}: inconsistent places table")
        self._tree = _KDTree(_to_xyz(self._lat, self._lng))

    def __len__(self) -> int:
        return len(self._names)

    def lookup(self, lat: float, lng: float, *, max_distance_km: float | None = None) -> Place | None:
        """Nearest place, or None for invalid coordinates or when farther than ``max_distance_km``."""
        if not (math.isfinite(lat) and math.isfinite(lng)) or abs(lat) > 90 or abs(lng) > 180:
            return None
        la, lo = math.radians(lat), math.radians(lng)
        q = (math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la))
        i, d2 = self._tree.nearest(q)
        distance = _chord_to_km(math.sqrt(d2))
        if max_distance_km is not None and distance > max_distance_km:
            return None
        c = int(self._country[i])
        return Place(
            name=self._names[i],
            admin1=self._admin1_names[int(self._admin1[i])],
            country_code=self._cc[c],
            country=self._country_names[c],
            lat=float(self._lat[i]),
            lng=float(self._lng[i]),
            distance_km=round(distance, 3),
        )


_default: ReverseGeocoder | None = None
_default_lock = threading.Lock()


def default_geocoder() -> ReverseGeocoder:
    """The shared index, loaded once per process on first use (thread-safe)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = ReverseGeocoder()
    return _default


def reverse_geocode(lat: float, lng: float, *, max_distance_km: float | None = 250.0) -> Place | None:
    """Nearest place to (lat, lng). Points farther than ``max_distance_km`` from any town
    (open sea, Antarctica) give None rather than a misleading far-away name."""
    return default_geocoder().lookup(lat, lng, max_distance_km=max_distance_km)
