"""EXIF reading for uploaded photos: camera, capture time, GPS position.

Offers ``read_exif(image_or_exif) -> ExifData`` working on an opened Pillow image (header
only; no pixel decode) or its ``Image.Exif``, and ``ExifData.as_metadata()`` for the
``technical_metadata`` JSON of a media item. Nothing here raises on bad tags: a malformed
field just reads as ``None`` (cameras and editors write plenty of broken EXIF).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from PIL import Image

# IFD0 tags
MAKE, MODEL, ORIENTATION, SOFTWARE, DATETIME = 0x010F, 0x0110, 0x0112, 0x0131, 0x0132
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
# Exif sub-IFD tags
DATETIME_ORIGINAL, DATETIME_DIGITIZED = 0x9003, 0x9004
OFFSET_TIME, OFFSET_TIME_ORIGINAL, OFFSET_TIME_DIGITIZED = 0x9010, 0x9011, 0x9012
SUBSEC_TIME_ORIGINAL = 0x9291
# GPS IFD tags
GPS_LAT_REF, GPS_LAT, GPS_LNG_REF, GPS_LNG = 1, 2, 3, 4
GPS_ALT_REF, GPS_ALT, GPS_TIMESTAMP, GPS_DATESTAMP = 5, 6, 7, 29

_DT_RE = re.compile(r"^\s*(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET_RE = re.compile(r"^\s*([+-])(\d{2}):?(\d{2})\s*$")


@dataclass(frozen=True, slots=True)
class GpsPosition:
    lat: float  # decimal degrees, south negative
    lng: float  # decimal degrees, west negative
    altitude: float | None = None  # metres, below sea level negative
    timestamp: datetime | None = None  # UTC fix time from GPSDateStamp + GPSTimeStamp


@dataclass(frozen=True, slots=True)
class ExifData:
    make: str | None = None
    model: str | None = None
    software: str | None = None
    orientation: int | None = None  # 1..8 as in the EXIF spec
    taken_at: datetime | None = None  # aware when the file says its offset (or GPS time gives it)
    gps: GpsPosition | None = None

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.make, self.model, self.software, self.taken_at, self.gps))

    def as_metadata(self, address: str | None = None) -> dict[str, Any]:
        """The ``technical_metadata`` shape of the contract: make/model/software/date_taken/gps."""
        gps = None
        if self.gps is not None:
            g = self.gps
            gps = {"lat": g.lat, "lng": g.lng, "altitude": g.altitude, "address": address}
        return {
            "make": self.make,
            "model": self.model,
            "software": self.software,
            "date_taken": self.taken_at.isoformat() if self.taken_at else None,
            "gps": gps,
        }


MAX_TEXT_LENGTH = 128  # characters kept of a free-text field (make, model, software): the columns hold 128
# Control and format characters (C0/C1 controls, bidi overrides, zero-width marks), surrogates,
# private-use and unassigned code points: a camera name needs none of them.
_UNPRINTABLE = {"Cc", "Cf", "Cs", "Co", "Cn"}


def _printable(text: str) -> str:
    if text.isprintable():  # the usual case: nothing to remove (isprintable also refuses spaces
        return text  # other than " ", which the slow path below keeps as plain spaces)
    return "".join(
        " " if ch.isspace() else ch for ch in text if ch.isspace() or unicodedata.category(ch) not in _UNPRINTABLE
    )


def _text(value: Any, limit: int = MAX_TEXT_LENGTH) -> str | None:
    """A text tag as stored and returned: decoded, without control characters, whitespace runs
    collapsed, at most `limit` characters. A 60 KB "camera make" is cut, not stored whole."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value[: limit * 4].decode("utf-8", "replace")  # enough bytes for `limit` characters
    if not isinstance(value, str):
        return None
    value = value[: limit * 4]
    if not value.isascii():
        # Pillow reads an ASCII tag's bytes as Latin-1; editors and phones write UTF-8 there.
        try:
            value = value.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    # Fixed-width ASCII fields come padded with NULs and spaces.
    value = " ".join(_printable(value).split())
    return value[:limit].rstrip() or None


def _number(value: Any) -> float | None:
    """An EXIF RATIONAL/SRATIONAL/integer as a float; None for 0/0, inf or junk."""
    try:
        if isinstance(value, tuple) and len(value) == 2:  # raw (numerator, denominator)
            num, den = value
            if not den:
                return None
            value = num / den
        result = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return result if math.isfinite(result) else None


def _dms(value: Any) -> float | None:
    """Degrees/minutes/seconds triple (or a bare decimal some writers use) as degrees."""
    if isinstance(value, (tuple, list)):
        parts = [_number(v) for v in value[:3]]
        if not parts or any(p is None for p in parts):
            return None
        deg, minutes, seconds = (parts + [0.0, 0.0])[:3]
        if minutes < 0 or minutes >= 60 or seconds < 0 or seconds >= 60 or deg < 0:  # type: ignore[operator]
            return None
        return deg + minutes / 60.0 + seconds / 3600.0  # type: ignore[operator]
    return _number(value)


def _parse_offset(value: Any) -> timezone | None:
    text = _text(value)
    m = _OFFSET_RE.match(text) if text else None
    if not m:
        return None
    minutes = int(m.group(2)) * 60 + int(m.group(3))
    if minutes > 14 * 60:
        return None
    return timezone(timedelta(minutes=-minutes if m.group(1) == "-" else minutes))


def _parse_datetime(value: Any, subsec: Any = None) -> datetime | None:
    text = _text(value)
    m = _DT_RE.match(text) if text else None
    if not m:
        return None  # includes the "0000:00:00 00:00:00" placeholder some cameras write
    try:
        dt = datetime(*(int(g) for g in m.groups()))
    except ValueError:
        return None
    digits = _text(subsec)
    if digits and digits.isdigit():
        dt = dt.replace(microsecond=int(digits[:6].ljust(6, "0")))
    return dt


def _gps_time(gps: dict[int, Any]) -> datetime | None:
    date_text = _text(gps.get(GPS_DATESTAMP))
    stamp = gps.get(GPS_TIMESTAMP)
    if not date_text or not isinstance(stamp, (tuple, list)) or len(stamp) != 3:
        return None
    hms = [_number(v) for v in stamp]
    m = re.match(r"^(\d{4}):(\d{2}):(\d{2})$", date_text)
    if not m or any(v is None for v in hms):
        return None
    try:
        base = datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)), tzinfo=UTC)
    except ValueError:
        return None
    h, mi, s = hms
    if not (0 <= h < 24 and 0 <= mi < 60 and 0 <= s < 61):  # type: ignore[operator]
        return None
    return base + timedelta(hours=h, minutes=mi, seconds=s)  # type: ignore[arg-type]


def _read_gps(gps: dict[int, Any]) -> GpsPosition | None:
    lat, lng = _dms(gps.get(GPS_LAT)), _dms(gps.get(GPS_LNG))
    if lat is None or lng is None:
        return None
    lat_ref = (_text(gps.get(GPS_LAT_REF)) or "N").upper()
    lng_ref = (_text(gps.get(GPS_LNG_REF)) or "E").upper()
    if lat_ref.startswith("S"):
        lat = -lat
    if lng_ref.startswith("W"):
        lng = -lng
    if abs(lat) > 90 or abs(lng) > 180:
        return None
    if lat == 0.0 and lng == 0.0:
        return None  # phones write 0/0 when they had no fix; "Null Island" is not a place
    altitude = _number(gps.get(GPS_ALT))
    alt_ref = gps.get(GPS_ALT_REF)
    if isinstance(alt_ref, bytes):
        alt_ref = alt_ref[:1] == b"\x01"
    if altitude is not None and alt_ref in (1, True):
        altitude = -abs(altitude)  # ref 1 = below sea level
    return GpsPosition(
        lat=round(lat, 7),
        lng=round(lng, 7),
        altitude=round(altitude, 2) if altitude is not None else None,
        timestamp=_gps_time(gps),
    )


def _capture_time(ifd0: Image.Exif, sub: dict[int, Any], gps_time: datetime | None) -> datetime | None:
    candidates = (
        (sub.get(DATETIME_ORIGINAL), sub.get(OFFSET_TIME_ORIGINAL), sub.get(SUBSEC_TIME_ORIGINAL)),
        (sub.get(DATETIME_DIGITIZED), sub.get(OFFSET_TIME_DIGITIZED), None),
        (ifd0.get(DATETIME), sub.get(OFFSET_TIME), None),
    )
    for raw, raw_offset, subsec in candidates:
        local = _parse_datetime(raw, subsec)
        if local is None:
            continue
        tz = _parse_offset(raw_offset)
        if tz is None and gps_time is not None:
            tz = _offset_from_gps(local, gps_time)
        return local.replace(tzinfo=tz) if tz else local
    return None


def _offset_from_gps(local: datetime, gps_time: datetime) -> timezone | None:
    """Infer the UTC offset from the GPS fix time (UTC) when the camera did not write one.

    Only trusted when the difference is a whole quarter hour (all real offsets are) within
    two minutes and inside the ±14 h range; otherwise the clocks just disagree.
    """
    diff = (local - gps_time.replace(tzinfo=None)).total_seconds()
    quarter = round(diff / 900.0) * 900
    if abs(diff - quarter) > 120 or abs(quarter) > 14 * 3600:
        return None
    return timezone(timedelta(seconds=quarter))


def _sub_ifd(exif: Image.Exif, tag: int) -> dict[int, Any]:
    try:
        return dict(exif.get_ifd(tag))
    except Exception:  # noqa: BLE001 — a corrupt IFD pointer must not fail the whole read
        return {}


def read_exif(source: Image.Image | Image.Exif) -> ExifData:
    """EXIF fields of an opened image (or of its ``Image.Exif``); never raises."""
    try:
        exif = source.getexif() if isinstance(source, Image.Image) else source
    except Exception:  # noqa: BLE001 — broken APP1 segment: treat as no EXIF
        return ExifData()
    if not exif:
        return ExifData()
    sub = _sub_ifd(exif, EXIF_IFD)
    gps = None
    try:
        gps = _read_gps(_sub_ifd(exif, GPS_IFD))
    except Exception:  # noqa: BLE001
        gps = None
    orientation = exif.get(ORIENTATION)
    try:
        taken_at = _capture_time(exif, sub, gps.timestamp if gps else None)
    except Exception:  # noqa: BLE001
        taken_at = None
    return ExifData(
        make=_text(exif.get(MAKE)),
        model=_text(exif.get(MODEL)),
        software=_text(exif.get(SOFTWARE)),
        orientation=orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None,
        taken_at=taken_at,
        gps=gps,
    )
