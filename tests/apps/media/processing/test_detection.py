"""Detector port: a YOLOv8-format ONNX graph built here, the HTTP protocol against a loopback
service, and the trash summary."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from kiln.apps.media.processing.detection import (
    Detection,
    DetectorError,
    DetectorUnavailable,
    HttpDetector,
    OnnxYoloDetector,
    detector_from_settings,
    nms,
    summarize,
)
from tests.fakes.detector import fake_detector  # noqa: F401  (fixture)

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SIZE = 64
# Anchors (model-input pixels, cx cy w h) and class scores [plastic, person].
ANCHORS = np.array(
    [
        # cx,  cy,  w,  h, plastic, person
        [32.0, 32.0, 20.0, 10.0, 0.10, 0.00],  # 0: score grows with image brightness (see graph)
        [16.0, 40.0, 12.0, 12.0, 0.90, 0.05],  # 1: confident plastic
        [17.0, 41.0, 12.0, 12.0, 0.80, 0.05],  # 2: near-duplicate of 1 -> removed by NMS
        [16.0, 40.0, 12.0, 12.0, 0.02, 0.70],  # 3: same place as 1 but another class -> kept
        [50.0, 5.0, 6.0, 6.0, 0.20, 0.10],  # 4: below the threshold
    ],
    dtype=np.float32,
)


def build_model(path, *, names: str | None = "{0: 'plastic', 1: 'person'}"):
    """images [1,3,64,64] -> output0 [1, 4+2, 5]: constant anchors, plus the image's mean
    brightness added to anchor 0's plastic score, so the output really depends on the input."""
    from onnx import TensorProto, helper, numpy_helper

    base = ANCHORS.T[None]  # [1, 6, 5]
    mask = np.zeros_like(base)
    mask[0, 4, 0] = 1.0
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
            helper.make_node("Mul", ["mask", "mean"], ["boost"]),
            helper.make_node("Add", ["base", "boost"], ["output0"]),
        ],
        "tiny_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 5])],
        initializer=[numpy_helper.from_array(base, "base"), numpy_helper.from_array(mask, "mask")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if names is not None:
        helper.set_model_props(model, {"names": names})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_onnx_yolo_decodes_letterboxed_boxes_with_nms(tmp_path):
    det = OnnxYoloDetector(build_model(tmp_path / "m.onnx"), conf_threshold=0.5)
    assert det.input_size == (64, 64) and det.names == ["plastic", "person"]
    # 128x64 image: scale 0.5, letterboxed with 16 px of padding above and below.
    found = det.detect(Image.new("RGB", (128, 64), (0, 0, 0)))
    got = sorted((d.label, d.confidence, d.bbox) for d in found)
    assert got == [
        ("person", 0.7, (20.0, 36.0, 44.0, 60.0)),  # (16±6, 40±6) -> minus pad y 16 -> / 0.5
        ("plastic", 0.9, (20.0, 36.0, 44.0, 60.0)),
    ]


def test_onnx_output_follows_the_input(tmp_path):
    det = OnnxYoloDetector(build_model(tmp_path / "m.onnx"), conf_threshold=0.5)
    # A white image (mean 1.0 after /255) lifts anchor 0 to 1.1 -> a third detection appears.
    bright = det.detect(Image.new("RGB", (128, 64), (255, 255, 255)))
    assert len(bright) == 3
    centre = [d for d in bright if d.bbox == (44.0, 22.0, 84.0, 42.0)]
    assert len(centre) == 1 and centre[0].label == "plastic"


def test_labels_file_when_model_has_no_names(tmp_path):
    path = build_model(tmp_path / "m.onnx", names=None)
    with pytest.raises(DetectorError, match="no class names"):
        OnnxYoloDetector(path)
    labels = tmp_path / "labels.txt"
    labels.write_text("bottle\ncan\n")
    det = OnnxYoloDetector(path, labels=labels, conf_threshold=0.5)
    assert {d.label for d in det.detect(Image.new("RGB", (64, 64)))} == {"bottle", "can"}


def test_missing_model_and_missing_runtime_give_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(DetectorError, match="not found"):
        OnnxYoloDetector(tmp_path / "nope.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(DetectorError, match="needs onnxruntime"):
        OnnxYoloDetector(build_model(tmp_path / "m.onnx"))


def test_nms_keeps_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=np.float32)
    keep = nms(boxes, np.array([0.6, 0.9, 0.5]), 0.5)
    assert keep.tolist() == [1, 2]


def red_scene() -> Image.Image:
    img = Image.new("RGB", (320, 240), (40, 120, 40))
    draw = ImageDraw.Draw(img)
    draw.rectangle([30, 40, 89, 119], fill=(255, 0, 0))  # 60 x 80
    draw.rectangle([200, 150, 259, 189], fill=(255, 0, 0))  # 60 x 40
    return img


def test_http_detector_posts_multipart_and_parses_boxes(fake_detector):  # noqa: F811
    found = HttpDetector(fake_detector.url).detect(red_scene())
    assert fake_detector.received[0]["fields"] == ["file"]
    assert str(fake_detector.received[0]["content_type"]).startswith("multipart/form-data")
    assert len(found) == 2
    a, b = sorted(found, key=lambda d: d.bbox[0])
    assert a.label == "plastic" and a.confidence > 0.9
    assert a.bbox == pytest.approx((30, 40, 90, 120), abs=2)  # JPEG blurs edges by a pixel
    assert b.bbox == pytest.approx((200, 150, 260, 190), abs=2)
    assert a.normalized(320, 240) == pytest.approx(
        {"x": 30 / 320, "y": 40 / 240, "w": 60 / 320, "h": 80 / 240}, abs=0.01
    )


async def test_http_detector_async(fake_detector):  # noqa: F811
    found = await HttpDetector(fake_detector.url).adetect(red_scene())
    assert len(found) == 2


@pytest.mark.parametrize(
    ("mode", "error"), [("error", DetectorUnavailable), ("garbage", DetectorError), ("bad-shape", DetectorError)]
)
def test_http_detector_misbehaving_service(fake_detector, mode, error):  # noqa: F811
    fake_detector.mode = mode
    with pytest.raises(error):
        HttpDetector(fake_detector.url).detect(red_scene())


def test_http_detector_unreachable():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DetectorUnavailable):
        HttpDetector(f"http://127.0.0.1:{port}/detect", timeout=2).detect(red_scene())


def test_detector_from_settings(tmp_path, fake_detector):  # noqa: F811
    assert detector_from_settings(None, None) is None
    http = detector_from_settings(None, fake_detector.url)
    assert isinstance(http, HttpDetector)
    local = detector_from_settings(build_model(tmp_path / "m.onnx"), fake_detector.url)
    assert isinstance(local, OnnxYoloDetector) and local.name == "onnx:m.onnx"


def test_summarize_trash_semantics():
    dets = [
        Detection("Bottle", 0.81, (0, 0, 1, 1)),
        Detection("person", 0.99, (0, 0, 1, 1)),
        Detection("Rubbish", 0.6, (0, 0, 1, 1)),
    ]
    s = summarize(dets)
    assert (s.has_trash, s.confidence, s.detections_count, s.trash_count) == (True, 0.81, 3, 2)
    assert summarize([Detection("person", 0.99, (0, 0, 1, 1))]).has_trash is False
    assert summarize([]).confidence == 0.0
    assert summarize(dets, trash_labels=None).confidence == 0.99  # every class is litter
