"""Image verification, single-pass extraction, thumbnails and perceptual hashes."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, JpegImagePlugin, TiffImagePlugin

from kiln.apps.media.processing import imaging
from kiln.apps.media.processing.imaging import ImageRejected, extract, hamming, probe, raw_decode_thumbnail


def scene(width: int = 1200, height: int = 900, seed: int = 0) -> Image.Image:
    """A textured picture with a red block in the top-left corner (to check orientation)."""
    rng = np.random.default_rng(seed)
    base = np.linspace(30, 220, width, dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 12, (height, width, 3)).astype(np.float32)
    img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, width // 4, height // 4], fill=(255, 0, 0))
    for _ in range(6):  # structure that differs between seeds
        x, y = rng.integers(0, max(1, width - 100)), rng.integers(0, max(1, height - 100))
        draw.ellipse([x, y, x + 90, y + 90], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return img


def encode(img: Image.Image, fmt: str = "JPEG", exif: Image.Exif | None = None, **kw) -> bytes:
    buf = io.BytesIO()
    if exif is not None:
        kw["exif"] = exif
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def gps_exif(orientation: int | None = None) -> Image.Exif:
    R = TiffImagePlugin.IFDRational  # noqa: N806
    exif = Image.Exif()
    exif[0x010F] = "Kiln"
    if orientation:
        exif[0x0112] = orientation
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (R(48), R(51), R(2376, 100)), 3: "E", 4: (R(2), R(21), R(792, 100))})
    return exif


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("WEBP", "image/webp"),
        ("TIFF", "image/tiff"),
        ("BMP", "image/bmp"),
    ],
)
def test_probe_accepts_supported_formats(fmt, mime):
    info = probe(encode(scene(320, 200), fmt))
    assert (info.format, info.mime, info.width, info.height) == (fmt, mime, 320, 200)


def test_heic_when_pillow_heif_is_installed():
    if not imaging.heif_supported():
        pytest.skip("pillow-heif not installed")
    data = encode(scene(320, 240), "HEIF")
    assert probe(data).format == "HEIF"
    out = extract(data, geocode=False)
    assert (out.width, out.height, out.mime) == (320, 240, "image/heif")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"hello, this is a text file, not a photo", "not a supported image"),
        (b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "not a supported image"),
    ],
)
def test_non_images_are_rejected_with_a_reason(data, reason):
    with pytest.raises(ImageRejected, match=reason):
        probe(data)


def test_gif_is_not_an_accepted_format():
    with pytest.raises(ImageRejected):
        probe(encode(scene(64, 64).convert("P"), "GIF"))


def test_truncated_jpeg_fails_extraction_cleanly():
    data = encode(scene(), quality=90)
    with pytest.raises(ImageRejected, match="corrupt or truncated"):
        extract(data[: len(data) // 3], geocode=False)


def test_extract_reads_everything_in_one_pass(tmp_path):
    raw = encode(scene(2400, 1800), exif=gps_exif(orientation=6), quality=90)
    path = tmp_path / "IMG_0001.jpg"
    path.write_bytes(raw)
    out = extract(path)
    # Orientation 6: stored landscape, displayed portrait.
    assert (out.width, out.height) == (1800, 2400)
    assert (out.format, out.mime, out.size_bytes) == ("JPEG", "image/jpeg", len(raw))
    assert out.sha256 == hashlib.sha256(raw).hexdigest()
    assert out.exif.make == "Kiln"
    assert out.lat == pytest.approx(48.8566, abs=1e-4) and out.lng == pytest.approx(2.3522, abs=1e-4)
    assert out.address == "Paris, France"
    meta = out.technical_metadata()
    assert meta["gps"]["address"] == out.address and meta["phash"] == out.phash
    thumb = Image.open(io.BytesIO(out.thumbnail_jpeg))
    assert thumb.format == "JPEG" and thumb.size == (300, 400) == (out.thumbnail_width, out.thumbnail_height)
    # The red block was top-left in the stored pixels; rotated 90° clockwise it is top-right.
    px = np.asarray(thumb.convert("RGB"), dtype=int)
    assert px[20, 280, 0] > 200 and px[20, 280, 1] < 60
    assert px[20, 20, 0] < 200 or px[20, 20, 1] > 60
    assert len(out.phash) == len(out.dhash) == 16


def test_extract_decodes_jpeg_at_reduced_scale(monkeypatch):
    scales = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        scales.append(self.decoderconfig[0] if self.decoderconfig else None)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    out = extract(encode(scene(4000, 3000), quality=85), geocode=False)
    assert scales and scales[0] == 8  # 4000x3000 -> 500x375 decode for a 400 px thumbnail
    assert (out.width, out.height) == (4000, 3000)
    assert (out.thumbnail_width, out.thumbnail_height) == (400, 300)


def test_working_image_for_a_detector_comes_from_the_same_decode():
    out = extract(encode(scene(2000, 1000)), geocode=False, working_size=640)
    assert out.working_image is not None and out.working_image.size == (640, 320)
    assert out.thumbnail_width == 400


def test_small_image_is_not_upscaled_and_transparency_becomes_white():
    img = Image.new("RGBA", (120, 80), (0, 0, 0, 0))
    ImageDraw.Draw(img).rectangle([0, 0, 59, 79], fill=(0, 0, 255, 255))
    out = extract(encode(img, "PNG"), geocode=False)
    thumb = Image.open(io.BytesIO(out.thumbnail_jpeg)).convert("RGB")
    assert thumb.size == (120, 80)
    r, g, b = thumb.getpixel((100, 40))
    assert min(r, g, b) > 240  # transparent -> white, not black
    assert thumb.getpixel((20, 40))[2] > 200
    assert out.place is None and out.exif.gps is None


def test_perceptual_hashes_survive_reencoding_but_separate_pictures():
    a = scene(1600, 1200, seed=1)
    b = scene(1600, 1200, seed=2)
    a1 = extract(encode(a, quality=95), geocode=False)
    a2 = extract(encode(a.resize((800, 600)), quality=40), geocode=False)
    b1 = extract(encode(b, quality=95), geocode=False)
    assert hamming(a1.phash, a2.phash) <= 6
    assert hamming(a1.dhash, a2.dhash) <= 8
    assert hamming(a1.phash, b1.phash) >= 16
    assert hamming(a1.phash, a1.phash) == 0


def test_raw_baseline_thumbnail(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(encode(scene(1600, 1200)))
    thumb = Image.open(io.BytesIO(raw_decode_thumbnail(path)))
    assert thumb.format == "JPEG" and thumb.size == (400, 300)


def test_load_oriented_applies_orientation():
    img = imaging.load_oriented(encode(scene(400, 200), exif=gps_exif(orientation=8)))
    assert img.size == (200, 400) and img.mode == "RGB"
    # Orientation 8 = rotate 90° counter-clockwise for display: top-left goes bottom-left.
    r, g, _ = img.getpixel((10, 390))
    assert r > 200 and g < 60
