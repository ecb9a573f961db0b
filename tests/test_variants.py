"""Smaller model variants (issue 15): int8, fp16 weights and the ORT format, each measured against fp32 on
the validation images, and refused with the reason when it loses more AP50 than allowed."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest

from artdet.detector.inference import Detector
from artdet.detector.variants import build_variants
from tests.conftest import artdet


@pytest.fixture(scope="module")
def variants(overfit_export, tmp_path_factory):
    model = tmp_path_factory.mktemp("variants") / "model.onnx"
    shutil.copy(overfit_export["path"], model)
    data = overfit_export["data"]
    base, reports = build_variants(model, data, ("int8", "fp16", "ort"), [r.path for r in data.images])
    return model, base, {r.kind: r for r in reports}


def test_each_variant_is_built_and_measured_against_fp32(variants):
    model, base, reports = variants
    assert base["kind"] == "fp32" and base["size_bytes"] == model.stat().st_size and base["ap50"] > 0.3
    fp16, ort_format, int8 = reports["fp16"], reports["ort"], reports["int8"]
    # fp16 weights: half the bytes, the same boxes
    assert fp16.path and fp16.size_bytes < 0.55 * base["size_bytes"]
    assert fp16.parity["found_share"] == 1.0 and fp16.parity["mean_iou"] > 0.99
    assert abs(fp16.ap50 - base["ap50"]) < 0.01
    weights = [t for t in onnx.load(fp16.path).graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert weights  # really stored in half precision
    # the ORT format: the same graph, the same results, loadable with its model card
    assert ort_format.path.endswith(".ort") and ort_format.ap50 == pytest.approx(base["ap50"])
    assert Detector(ort_format.path).class_names == Detector(model).class_names
    # int8: a quarter of the bytes or so; kept or refused, its numbers and parity are reported either way
    assert int8.size_bytes < 0.3 * base["size_bytes"] and int8.parity["boxes"] == fp16.parity["boxes"]
    assert bool(int8.path) != bool(int8.refused)
    if int8.refused:
        assert "AP50" in int8.refused and "more than the 1.00 allowed" in int8.refused
    else:
        assert Detector(int8.path).class_names == ["circle", "square"]  # the card survives quantisation


def test_a_variant_that_loses_accuracy_is_refused_with_the_reason(overfit_export, tmp_path):
    model = tmp_path / "model.onnx"
    shutil.copy(overfit_export["path"], model)
    base, (fp16,) = build_variants(model, overfit_export["data"], ("fp16",), max_ap50_drop=0.0)
    if fp16.ap50 >= base["ap50"]:
        pytest.fail("fp16 matched fp32 exactly: this test needs a variant that loses something")
    assert fp16.refused.startswith(f"AP50 {fp16.ap50:.4f} against fp32's {base['ap50']:.4f}")
    assert not fp16.path and not (tmp_path / "model.fp16.onnx").exists()  # not kept


def test_export_builds_variants_and_reports_them(overfit_run, tmp_path):
    out = tmp_path / "model.onnx"
    result = artdet("export", str(overfit_run), "--out", str(out), "--variants", "fp16,ort", "--no-check")
    report = json.loads(out.with_suffix(".variants.json").read_text())
    assert [v["kind"] for v in report["variants"]] == ["fp16", "ort"]
    assert (tmp_path / "model.fp16.onnx").is_file() and (tmp_path / "model.ort").is_file()
    assert "fp16: AP50" in result.stderr and report["fp32"]["size_bytes"] == out.stat().st_size
