"""EXIF reading: camera, capture time and GPS from files the tests write with Pillow."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone

import pytest
from PIL import Image, TiffImagePlugin

from kiln.apps.media.processing.exif import MAX_TEXT_LENGTH, ExifData, read_exif


def photo(*, ifd0=None, exif_ifd=None, gps=None, fmt="JPEG") -> Image.Image:
    """A small image with the given EXIF tags, written and re-opened like an upload."""
    exif = Image.Exif()
    for tag, value in (ifd0 or {}).items():
        exif[tag] = value
    if exif_ifd:
        sub = exif.get_ifd(0x8769)
        sub.update(exif_ifd)
    if gps:
        g = exif.get_ifd(0x8825)
        g.update(gps)
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (10, 20, 30)).save(buf, fmt, exif=exif)
    return Image.open(io.BytesIO(buf.getvalue()))


def R(num: int, den: int = 1) -> TiffImagePlugin.IFDRational:  # noqa: N802
    return TiffImagePlugin.IFDRational(num, den)


PARIS_GPS = {1: "N", 2: (R(48), R(51), R(2376, 100)), 3: "E", 4: (R(2), R(21), R(792, 100)), 5: b"\x00", 6: R(355, 10)}


def test_camera_fields_and_padding_are_cleaned():
    data = read_exif(photo(ifd0={0x010F: "Canon\x00\x00 ", 0x0110: "EOS R5", 0x0131: "GIMP 2.10"}))
    assert (data.make, data.model, data.software) == ("Canon", "EOS R5", "GIMP 2.10")
    assert data.gps is None and data.taken_at is None


def test_gps_decimal_degrees_with_north_east_refs():
    gps = read_exif(photo(gps=PARIS_GPS)).gps
    assert gps is not None
    assert gps.lat == pytest.approx(48 + 51 / 60 + 23.76 / 3600, abs=1e-7)
    assert gps.lng == pytest.approx(2 + 21 / 60 + 7.92 / 3600, abs=1e-7)
    assert gps.altitude == 35.5


def test_south_west_refs_and_below_sea_level_altitude():
    gps = read_exif(
        photo(gps={1: "S", 2: (R(33), R(52), R(0)), 3: "W", 4: (R(70), R(30), R(0)), 5: b"\x01", 6: R(12)})
    ).gps
    assert gps is not None
    assert gps.lat == pytest.approx(-(33 + 52 / 60))
    assert gps.lng == pytest.approx(-70.5)
    assert gps.altitude == -12.0  # the reference ignored the altitude ref


@pytest.mark.parametrize(
    "bad",
    [
        {1: "N", 2: (R(1), R(0, 0), R(0)), 3: "E", 4: (R(2), R(0), R(0))},  # 0/0 rational
        {1: "N", 2: (R(95), R(0), R(0)), 3: "E", 4: (R(2), R(0), R(0))},  # latitude > 90
        {1: "N", 2: (R(10), R(75), R(0)), 3: "E", 4: (R(2), R(0), R(0))},  # 75 minutes
        {1: "N", 2: (R(0), R(0), R(0)), 3: "E", 4: (R(0), R(0), R(0))},  # no-fix 0/0
        {1: "N", 2: (R(10), R(0), R(0))},  # longitude missing
    ],
)
def test_malformed_gps_reads_as_none(bad):
    assert read_exif(photo(gps=bad)).gps is None


def test_capture_time_with_offset_tag_is_aware():
    data = read_exif(photo(exif_ifd={0x9003: "2024:05:01 14:30:05", 0x9011: "+02:00", 0x9291: "25"}))
    assert data.taken_at == datetime(2024, 5, 1, 14, 30, 5, 250000, tzinfo=timezone(timedelta(hours=2)))


def test_capture_time_without_offset_stays_naive():
    data = read_exif(photo(exif_ifd={0x9003: "2024:05:01 14:30:05"}))
    assert data.taken_at == datetime(2024, 5, 1, 14, 30, 5)
    assert data.taken_at.tzinfo is None


def test_offset_inferred_from_gps_time_when_camera_wrote_none():
    gps = {**PARIS_GPS, 7: (R(12), R(30), R(3)), 29: "2024:05:01"}
    data = read_exif(photo(exif_ifd={0x9003: "2024:05:01 14:30:05"}, gps=gps))
    assert data.gps is not None
    assert data.gps.timestamp == datetime(2024, 5, 1, 12, 30, 3, tzinfo=UTC)
    assert data.taken_at.utcoffset() == timedelta(hours=2)


def test_falls_back_to_ifd0_datetime_and_rejects_placeholder():
    taken = read_exif(photo(ifd0={0x0132: "2023:12:31 23:59:59"})).taken_at
    assert taken == datetime(2023, 12, 31, 23, 59, 59)
    assert read_exif(photo(exif_ifd={0x9003: "0000:00:00 00:00:00"})).taken_at is None
    assert read_exif(photo(exif_ifd={0x9003: "2024:13:45 99:00:00"})).taken_at is None


def test_png_without_exif_and_metadata_shape():
    data = read_exif(photo(fmt="PNG"))
    assert data == ExifData() and data.empty
    meta = read_exif(photo(ifd0={0x010F: "Apple"}, gps=PARIS_GPS)).as_metadata("Paris, France")
    assert meta["make"] == "Apple" and meta["date_taken"] is None
    assert meta["gps"]["address"] == "Paris, France" and meta["gps"]["altitude"] == 35.5


def test_orientation_outside_spec_is_ignored():
    assert read_exif(photo(ifd0={0x0112: 6})).orientation == 6
    assert read_exif(photo(ifd0={0x0112: 42})).orientation is None


def test_text_fields_lose_control_characters_and_are_bounded():
    hostile = "Evil\x00Cam\x1b[31m\x7f<script>alert(1)</script>\r\n" + "A" * 60_000
    data = read_exif(photo(ifd0={0x010F: hostile, 0x0110: "Model\tX\x07 2", 0x0131: "\x01\x02\x03"}))
    assert data.make is not None and len(data.make) == MAX_TEXT_LENGTH
    assert data.make.startswith("EvilCam[31m<script>alert(1)</script> AAA")  # text kept, controls gone
    assert all(ch.isprintable() for ch in data.make)
    assert data.model == "Model X 2" and data.software is None  # nothing printable left
    assert read_exif(photo(ifd0={0x010F: "Fujifilm  X-T5 "})).make == "Fujifilm X-T5"
    # UTF-8 written into an ASCII tag by some editors: bidi overrides and zero-width marks go too.
    raw = "Caméra\u202e\u200b 5".encode()
    assert read_exif(photo(ifd0={0x010F: raw})).make == "Caméra 5"
