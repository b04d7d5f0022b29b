"""Offline reverse geocoding against the shipped GeoNames table and a table built here."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.apps.media.processing.geocode import ReverseGeocoder, _to_xyz, default_geocoder, reverse_geocode


@pytest.mark.parametrize(
    ("lat", "lng", "address"),
    [
        (48.8566, 2.3522, "Paris, France"),
        (40.7128, -74.0060, "New York City, United States"),
        (-33.8688, 151.2093, "Sydney, Australia"),
        (35.6895, 139.6917, "Tokyo, Japan"),
        (47.4979, 19.0402, "Budapest, Hungary"),
        # Place names in Unicode as GeoNames writes them, never an ASCII transliteration.
        (47.4766, 19.0450, "Budapest XI. kerület, Hungary"),
        (-23.5475, -46.6361, "São Paulo, Brazil"),
        (41.0166, 28.9705, "Eminönü, Turkey"),
        (50.0647, 19.9450, "Kraków, Poland"),
    ],
)
def test_known_cities(lat, lng, address):
    place = reverse_geocode(lat, lng)
    assert place is not None
    assert place.address == address
    assert place.distance_km < 3


def test_place_fields_and_country_name():
    place = reverse_geocode(52.5200, 13.4050)
    assert place is not None and place.country_code == "DE" and place.country == "Germany"
    assert place.admin1 == "Berlin"


def test_open_ocean_and_invalid_coordinates_give_none():
    assert reverse_geocode(0.0, -150.0) is None  # mid-Pacific, nothing within 250 km
    assert reverse_geocode(0.0, -150.0, max_distance_km=None) is not None
    assert reverse_geocode(91.0, 0.0) is None
    assert reverse_geocode(float("nan"), 0.0) is None


def test_kdtree_matches_brute_force_on_the_real_table():
    geo = default_geocoder()
    xyz = _to_xyz(geo._lat, geo._lng)
    rng = np.random.default_rng(7)
    for lat, lng in rng.uniform([-80, -180], [80, 180], (150, 2)):
        q = _to_xyz(np.array([lat]), np.array([lng]))[0]
        best = int(np.argmin(((xyz - q) ** 2).sum(axis=1)))
        place = geo.lookup(float(lat), float(lng))
        assert place is not None
        assert (place.lat, place.lng) == (float(geo._lat[best]), float(geo._lng[best]))


def blob(strings):
    return np.frombuffer("\n".join(strings).encode(), dtype=np.uint8)


def test_antimeridian_with_a_custom_table(tmp_path):
    path = tmp_path / "places.npz"
    np.savez_compressed(
        path,
        lat=np.array([10.0, 10.0, -5.0], dtype=np.float32),
        lng=np.array([179.9, 170.0, -179.95], dtype=np.float32),
        country=np.array([0, 0, 1], dtype=np.uint16),
        admin1=np.array([1, 0, 0], dtype=np.uint16),
        names=blob(["East", "Far", "Ouest"]),
        admin1_names=blob(["", "Isles"]),
        country_codes=blob(["AA", "BB"]),
        country_names=blob(["Aland", "Beeland"]),
    )
    geo = ReverseGeocoder(path)
    assert len(geo) == 3
    # 10N, 179.95W is 0.15 degrees from "East" across the antimeridian, 10 degrees from "Far".
    east = geo.lookup(10.0, -179.95)
    assert east is not None and east.address == "East, Aland"
    assert east.distance_km == pytest.approx(16.4, abs=0.3)
    assert geo.lookup(-5.0, 179.99).name == "Ouest"
    assert geo.lookup(10.0, -179.95, max_distance_km=5) is None
