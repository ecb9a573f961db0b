"""ONNX export with parity against PyTorch, and torch-free detection with onnxruntime."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from PIL import Image

from artdet.detector.dataset import load_coco
from artdet.detector.export import ExportParityError, export_onnx, export_ready_model, load_run_model
from artdet.detector.images import ImageDecodeError, ImageTooLargeError
from artdet.detector.inference import Detector
from tests.conftest import ROOT, artdet


@pytest.fixture(scope="module")
def exported(overfit_export) -> dict:
    return overfit_export


def test_export_is_valid_onnx_with_metadata(exported):
    proto = onnx.load(str(exported["path"]))
    onnx.checker.check_model(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["class_names"]) == ["circle", "square"]
    assert meta["architecture"] == "fasterrcnn_mobilenet_v3_large_320_fpn"
    assert meta["run_id"] and float(meta["val_map"]) > 0
    assert "uint8" in meta["input"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[:2]] == ["height", "width"]
    assert [o.name for o in proto.graph.output] == ["boxes", "scores", "labels", "embedding"]
    (embedding,) = [o for o in proto.graph.output if o.name == "embedding"]
    assert [d.dim_value for d in embedding.type.tensor_type.shape.dim] == [256]  # the FPN's channels


def test_parity_with_pytorch_on_four_sizes_and_the_same_map(exported, overfit_run):
    parity = exported["result"]["parity"]
    sizes = {tuple(s) for s in parity["sizes"]}
    validation_sizes = {(im.width, im.height) for im in exported["data"].images[:4]}
    # the validation images at their own sizes and three resized copies: four sizes at least
    assert validation_sizes <= sizes and len(sizes - validation_sizes) >= 3
    assert parity["failures"] == []
    assert parity["matched"] >= 10 and parity["matched"] + parity["tied"] == parity["torch_detections"]
    assert parity["compared"] == parity["onnx_detections"] >= parity["matched"]  # every ONNX box was a PyTorch box
    assert parity["max_box_error_px"] <= 1.0 and parity["max_score_error"] <= 0.01
    assert f"{parity['matched']} of {parity['torch_detections']} PyTorch detections matched" in parity["summary"]

    from artdet.detector.evaluate import evaluate_model
    import torch

    # measured on the overfit run's validation set, which is its training set: the only images this tiny
    # model detects well (held-out shapes give mAP < 0.01 for both, which would compare nothing)
    model = export_ready_model(load_run_model(overfit_run)[0])
    data = exported["data"]
    torch_metrics = evaluate_model(model, data, torch.device("cpu"), max_side=None)
    onnx_metrics = json.loads(artdet("eval", exported["path"], "--ann", overfit_run.parent / "train.json",
                                     "--quiet").stdout)
    assert torch_metrics["map"] > 0.1
    assert abs(onnx_metrics["map"] - torch_metrics["map"]) <= 0.005
    assert abs(onnx_metrics["ap50"] - torch_metrics["ap50"]) <= 0.005


def test_parity_failure_is_loud_and_writes_nothing(exported, overfit_run, tmp_path, monkeypatch):
    import artdet.detector.export as export_module

    real = export_module.check_parity

    def broken(model, detector, images, threshold, **kwargs):
        with torch_no_grad():
            model.roi_heads.box_predictor.bbox_pred.bias.add_(5.0)  # PyTorch side drifts from the graph
        return real(model, detector, images, threshold, **kwargs)

    monkeypatch.setattr(export_module, "check_parity", broken)
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportParityError, match="differs from PyTorch"):
        export_onnx(overfit_run, out, exported["data"])
    assert not out.exists() and not list(tmp_path.iterdir())


def test_export_whose_parity_check_compared_nothing_writes_nothing(exported, overfit_run, tmp_path):
    # above a parity threshold of 1 neither runtime keeps anything: as a model that detects nothing would
    out = tmp_path / "unchecked.onnx"
    with pytest.raises(ExportParityError, match="compared nothing") as raised:
        export_onnx(overfit_run, out, exported["data"], parity_threshold=1.0)
    images = len(exported["data"].images) + 3  # every validation image was tried, and three resized copies
    assert f"On {images} images" in str(raised.value) and "--val" in str(raised.value)
    assert not out.exists() and not list(tmp_path.iterdir())


def torch_no_grad():
    import torch

    return torch.no_grad()


def _scene_jpeg(exif_orientation: int | None) -> tuple[bytes, np.ndarray]:
    """A synthetic training-like scene; with an orientation, stored rotated so that EXIF makes it upright."""
    from artdet.tools.experiments.synthetic import make_scene
    import random

    upright, _ = make_scene(random.Random(5), 128, 96, ("circle", "square"), 1)
    buffer = io.BytesIO()
    if exif_orientation is None:
        upright.save(buffer, "JPEG", quality=95)
    else:
        stored = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6 undoes this
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        stored.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue(), np.asarray(upright)


def test_detect_on_exif_rotated_photo_returns_upright_coordinates(exported):
    detector = Detector(exported["path"])
    plain_bytes, _ = _scene_jpeg(None)
    rotated_bytes, _ = _scene_jpeg(6)
    plain = detector.detect(plain_bytes, score_threshold=0.3)
    rotated = detector.detect(rotated_bytes, score_threshold=0.3)
    assert (rotated.width, rotated.height) == (128, 96) == (plain.width, plain.height)
    assert plain.detections, "the overfit model should find the shape"
    top_plain, top_rotated = plain.detections[0], rotated.detections[0]
    assert top_rotated.label == top_plain.label
    assert np.abs(np.array(top_rotated.box) - np.array(top_plain.box)).max() <= 3.0


def test_detect_options_threshold_topk_classes(exported):
    detector = Detector(exported["path"])
    data, _ = _scene_jpeg(None)
    everything = detector.detect(data, score_threshold=0.0)
    assert len(everything.detections) >= 2
    assert all(d.score >= 0.05 for d in everything.detections)  # the baked-in export threshold

    def seen(result):
        return [(d.label, tuple(d.box), d.score) for d in result.detections]

    assert seen(detector.detect(data, score_threshold=0.0, top_k=1)) == seen(everything)[:1]
    assert {d.label for d in everything.detections} == {"circle", "square"}  # so the filter has work to do
    only_squares = detector.detect(data, score_threshold=0.0, classes=["square"])
    assert seen(only_squares) == [d for d in seen(everything) if d[0] == "square"]
    with pytest.raises(ValueError, match="unicorn"):
        detector.detect(data, classes=["unicorn"])


def test_detect_refuses_bad_images_clearly(exported, tmp_path):
    detector = Detector(exported["path"], max_pixels=100_000)
    good, _ = _scene_jpeg(None)
    with pytest.raises(ImageDecodeError, match="not a recognised image format"):
        detector.detect(b"\x00garbage", source="upload")
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        detector.detect(good[: len(good) // 2])
    big = io.BytesIO()
    Image.new("RGB", (1000, 1000)).save(big, "JPEG")
    with pytest.raises(ImageTooLargeError):
        detector.detect(big.getvalue())
    # the command line says so in one line, without a traceback
    (tmp_path / "bad.jpg").write_bytes(good[:200])
    result = artdet("detect", tmp_path / "bad.jpg", "--model", exported["path"], "--json", check=False)
    assert result.returncode == 2
    assert "bad.jpg" in result.stderr and "Traceback" not in result.stderr


def test_detect_cli_json_draw_and_coco_folder(exported, tmp_path):
    plain, _ = _scene_jpeg(None)
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(plain)
    (folder / "sub" / "b.jpg").write_bytes(_scene_jpeg(6)[0])
    result = artdet("detect", folder / "a.jpg", "--model", exported["path"], "--json", "--draw",
                    tmp_path / "a.png", "--threshold", "0.3")
    payload = json.loads(result.stdout)
    assert (payload["width"], payload["height"]) == (128, 96)
    assert payload["detections"]
    assert set(payload["detections"][0]) == {"box", "score", "label", "label_id", "description"}
    drawn = Image.open(tmp_path / "a.png")
    assert drawn.size == (128, 96)
    assert np.abs(np.asarray(drawn.convert("RGB")).astype(int) - _scene_jpeg(None)[1]).max() > 100  # boxes drawn

    artdet("detect", folder, "--model", exported["path"], "--coco", tmp_path / "pre.json", "--threshold", "0.3")
    coco = json.loads((tmp_path / "pre.json").read_text())
    assert sorted(im["file_name"] for im in coco["images"]) == ["a.jpg", "sub/b.jpg"]
    assert all("score" in a for a in coco["annotations"]) and coco["annotations"]
    # the file is a valid COCO dataset our own loader (and annotation tools) accept
    assert load_coco(tmp_path / "pre.json", folder).statistics()["images"] == 2


def test_serving_path_does_not_import_torch(exported):
    code = ("import sys; from detector.inference import Detector; "
            f"d = Detector({str(exported['path'])!r}); "
            "from detector.images import decode_image; import tools.cli; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
