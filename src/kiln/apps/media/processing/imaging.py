"""Image handling for media uploads: verification, thumbnails, perceptual hashes, extraction.

Offers
* ``probe(source) -> ImageInfo`` — header-only check at upload time (format, size); raises
  ``ImageRejected`` with a reason a client can read for anything that is not a supported image;
* ``extract(source) -> Extraction`` — the worker's single pass over an upload: one open, EXIF +
  GPS + offline address, one reduced (``Image.draft``) decode feeding the EXIF-oriented JPEG
  thumbnail and the perceptual hashes;
* ``decode_cost_bytes(width, height, mime, box)`` — what decoding an upload for ``box`` costs in
  memory (JPEG: at the reduced DCT scale), so the worker can wait for a shared budget;
* ``raw_decode_thumbnail(path) -> bytes`` — plain Pillow open + thumbnail + JPEG, the baseline
  the media bench compares ``extract`` with;
* ``phash`` / ``dhash`` (64-bit hex, numpy) and ``hamming`` for near-duplicate detection.

Supported: JPEG, PNG, WebP, TIFF, BMP, and HEIC/HEIF when ``pillow-heif`` is installed.
``source`` is a path, bytes, or a binary file object.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import IO, Any, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from kiln.apps.media.processing.exif import ExifData, read_exif
from kiln.apps.media.processing.geocode import Place, reverse_geocode

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes]]

THUMBNAIL_SIZE = 400
THUMBNAIL_QUALITY = 85
# Pixels (width x height, from the header) above which an upload is refused before any decode.
# Pillow's own bomb guard only refuses above 2 x 89.5 MP and would decode anything below it.
DEFAULT_MAX_PIXELS = 100_000_000
# Pillow warns from 89.5 MP on; Kiln enforces its own limit right after the header is read.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# Formats Pillow may identify that we accept; MPO is how Pillow names multi-picture camera JPEGs.
_ACCEPTED = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "HEIF": "image/heif",
}
_heif_lock = threading.Lock()


class ImageRejected(ValueError):
    """The upload is not an image Kiln can process; ``str(exc)`` is safe to show the client."""


class ImageTooLarge(ImageRejected):
    """The header declares more pixels than the limit: refused without decoding."""


@lru_cache(maxsize=1)
def heif_supported() -> bool:
    """Register the HEIC/HEIF opener once if pillow-heif is installed."""
    with _heif_lock:
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            return False
        register_heif_opener()
        return True


def _formats() -> list[str]:
    heif_supported()
    Image.init()  # load every bundled plugin so all accepted format names are registered
    return [f for f in _ACCEPTED if f in Image.OPEN]


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str  # Pillow's name: JPEG, PNG, WEBP, TIFF, BMP, HEIF (MPO reported as JPEG)
    mime: str
    width: int  # as displayed, i.e. after EXIF orientation
    height: int


@dataclass(slots=True)
class Extraction:
    width: int  # displayed size (after EXIF orientation)
    height: int
    format: str
    mime: str
    size_bytes: int
    sha256: str  # of the uploaded bytes, for exact-duplicate detection
    exif: ExifData
    place: Place | None
    thumbnail_jpeg: bytes
    thumbnail_width: int
    thumbnail_height: int
    phash: str  # 16 hex digits
    dhash: str
    working_image: Image.Image | None = field(default=None, repr=False)  # see extract(working_size=)

    @property
    def lat(self) -> float | None:
        return self.exif.gps.lat if self.exif.gps else None

    @property
    def lng(self) -> float | None:
        return self.exif.gps.lng if self.exif.gps else None

    @property
    def altitude(self) -> float | None:
        return self.exif.gps.altitude if self.exif.gps else None

    @property
    def address(self) -> str | None:
        return self.place.address if self.place else None

    def technical_metadata(self) -> dict[str, Any]:
        meta = self.exif.as_metadata(self.address)
        meta.update(format=self.format, width=self.width, height=self.height, phash=self.phash)
        if self.sha256:
            meta["sha256"] = self.sha256
        return meta


def _read(source: Source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if hasattr(source, "read"):
        return source.read()  # type: ignore[union-attr]
    with open(source, "rb") as fh:  # type: ignore[arg-type]
        return fh.read()


def _open(data: bytes) -> Image.Image:
    if not data:
        raise ImageRejected("empty file")
    try:
        img = Image.open(io.BytesIO(data), formats=_formats())
    except UnidentifiedImageError:
        raise ImageRejected(
            "not a supported image (JPEG, PNG, WebP, TIFF, BMP" + (", HEIC" if heif_supported() else "") + ")"
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image too large: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"corrupt image header: {exc}") from None
    if img.width < 1 or img.height < 1:
        raise ImageRejected("image has no pixels")
    return img


def _check_pixels(img: Image.Image, max_pixels: int) -> None:
    pixels = img.width * img.height
    if pixels > max_pixels:
        img.close()
        raise ImageTooLarge(
            f"image too large: {img.width}x{img.height} is {pixels / 1e6:.1f} megapixels, "
            f"the limit is {max_pixels / 1e6:g} megapixels"
        )


def _draft_scale(width: int, height: int, box: int) -> int:
    """The DCT scale (1, 2, 4, 8) ``Image.draft`` picks for a JPEG to cover ``box``."""
    tw, th = _fit(width, height, box)
    for scale in (8, 4, 2):
        if -(-width // scale) >= tw and -(-height // scale) >= th:
            return scale
    return 1


def decode_cost_bytes(width: int, height: int, mime: str | None, box: int) -> int:
    """Memory that decoding a ``width`` x ``height`` upload for a ``box``-sized result holds at
    its peak: Pillow keeps 4 bytes per pixel (RGB is padded), plus one working copy (resample or
    mode conversion; two for transparency flattened on white). A JPEG is decoded at its reduced
    DCT scale (``Image.draft``), so a 12 MP photo for a 1280 px box costs 1/4 of its full size."""
    if mime == "image/jpeg":
        scale = _draft_scale(width, height, box)
        return -(-width // scale) * -(-height // scale) * 4 * 2
    return width * height * 4 * 3


def _oriented_size(img: Image.Image, orientation: int | None) -> tuple[int, int]:
    # Orientations 5-8 swap the axes (90/270 degree rotations).
    return (img.height, img.width) if orientation in (5, 6, 7, 8) else (img.width, img.height)


def _info(img: Image.Image, orientation: int | None) -> ImageInfo:
    fmt = "JPEG" if img.format == "MPO" else (img.format or "")
    width, height = _oriented_size(img, orientation)
    return ImageInfo(
        format=fmt, mime=_ACCEPTED.get(img.format or "", "application/octet-stream"), width=width, height=height
    )


def probe(source: Source, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Identify an upload from its header (no pixel decode). Raises ``ImageRejected``
    (``ImageTooLarge`` above ``max_pixels``)."""
    img = _open(_read(source))
    _check_pixels(img, max_pixels)
    with img:
        return _info(img, read_exif(img).orientation)


def _fit(width: int, height: int, box: int) -> tuple[int, int]:
    scale = min(1.0, box / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Flatten transparency on white: black is what a bare convert("RGB") would show.
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if img.mode == "I;16" or img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        peak = arr.max() or 1.0
        img = Image.fromarray((arr * (255.0 / peak)).clip(0, 255).astype(np.uint8))
    return img.convert("RGB")


def _reduced(img: Image.Image, box: int, orientation: int | None) -> Image.Image:
    """Decode at the smallest size that still covers ``box`` and apply EXIF orientation."""
    raw_w, raw_h = img.size
    tw, th = _fit(raw_w, raw_h, box)  # orientation-independent: the box is square
    # JPEG: decode with DCT scaling (1/2, 1/4, 1/8) straight to >= the target size.
    img.draft("RGB", (tw, th))
    try:
        img.thumbnail((tw, th), Image.Resampling.LANCZOS, reducing_gap=2.0)
        img.load()  # thumbnail() skips loading when the (drafted) image already fits
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"corrupt or truncated image data: {exc}") from None
    return _orient(_to_rgb(img), orientation)


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orient(img: Image.Image, orientation: int | None) -> Image.Image:
    # Applied after the reduced decode, so rotating costs a 400 px image, not 12 MP.
    method = _TRANSPOSE.get(orientation or 1)
    return img.transpose(method) if method is not None else img


def _encode_jpeg(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality, optimize=False, progressive=False)
    return out.getvalue()


_DCT32: np.ndarray | None = None


def _dct_matrix(n: int = 32) -> np.ndarray:
    global _DCT32
    if _DCT32 is None or _DCT32.shape[0] != n:
        k = np.arange(n)[:, None]
        x = np.arange(n)[None, :]
        m = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * x + 1) * k / (2 * n))
        m[0] /= np.sqrt(2.0)  # orthonormal DCT-II
        _DCT32 = m
    return _DCT32


def _bits_to_hex(bits: np.ndarray) -> str:
    value = 0
    for bit in bits.ravel():
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def phash(img: Image.Image) -> str:
    """DCT perceptual hash (64 bits): low-frequency structure above/below its median."""
    gray = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    d = _dct_matrix(32)
    low = (d @ gray @ d.T)[:8, :8]
    # The DC term is the mean brightness; leaving it out of the median keeps the hash
    # about structure, not exposure.
    median = np.median(low.ravel()[1:])
    return _bits_to_hex(low > median)


def dhash(img: Image.Image) -> str:
    """Difference hash (64 bits): is each pixel brighter than its right neighbour."""
    gray = np.asarray(img.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    return _bits_to_hex(gray[:, 1:] > gray[:, :-1])


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two hex hashes (0 = same picture, <= ~10 = near copy)."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def extract(
    source: Source,
    *,
    thumbnail_size: int = THUMBNAIL_SIZE,
    quality: int = THUMBNAIL_QUALITY,
    geocode: bool = True,
    working_size: int | None = None,
    checksum: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Extraction:
    """Everything the worker needs from one upload, decoding its pixels once.

    ``working_size`` (e.g. 1280) also keeps an oriented RGB copy of at most that side in
    ``Extraction.working_image`` for a detector, from the same decode.
    Raises ``ImageRejected`` for anything that is not a readable supported image.
    """
    data = _read(source)
    img = _open(data)
    _check_pixels(img, max_pixels)
    with img:
        exif = read_exif(img)
        info = _info(img, exif.orientation)
        decoded = _reduced(img, max(thumbnail_size, working_size or 0), exif.orientation)
    working = None
    if working_size:
        working = decoded.copy()
        working.thumbnail((working_size, working_size), Image.Resampling.LANCZOS)
    thumb = decoded
    if max(decoded.size) > thumbnail_size:
        thumb = decoded.resize(_fit(*decoded.size, thumbnail_size), Image.Resampling.LANCZOS)
    place = None
    if geocode and exif.gps is not None:
        place = reverse_geocode(exif.gps.lat, exif.gps.lng)
    return Extraction(
        width=info.width,
        height=info.height,
        format=info.format,
        mime=info.mime,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest() if checksum else "",
        exif=exif,
        place=place,
        thumbnail_jpeg=_encode_jpeg(thumb, quality),
        thumbnail_width=thumb.width,
        thumbnail_height=thumb.height,
        phash=phash(thumb),
        dhash=dhash(thumb),
        working_image=working,
    )


def load_oriented(source: Source, max_side: int | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An RGB, EXIF-oriented image (reduced to ``max_side`` if given), e.g. for a detector."""
    img = _open(_read(source))
    _check_pixels(img, max_pixels)
    with img:
        orientation = read_exif(img).orientation
        if max_side:
            return _reduced(img, max_side, orientation)
        try:
            img.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageRejected(f"corrupt or truncated image data: {exc}") from None
        return _orient(_to_rgb(img), orientation)


def raw_decode_thumbnail(path: str | os.PathLike[str], size: int = THUMBNAIL_SIZE) -> bytes:
    """Baseline for the bench: what plain Pillow does to thumbnail a file, nothing more."""
    with Image.open(path) as img:
        img.thumbnail((size, size))
        return _encode_jpeg(img.convert("RGB"), THUMBNAIL_QUALITY)
