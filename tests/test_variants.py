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


def test_a_variant_that_loses_accuracy_is_refused_with_the_reason(overfit_export, tmp_path, monkeypatch):
    """A variant whose boxes go wrong (here: the class scores' weights negated, as a broken conversion might)
    is measured, refused with the numbers, and not kept."""
    import numpy as np
    from onnx import numpy_helper

    from artdet.detector import variants as module

    def broken_fp16(fp32, out):
        model = onnx.load(str(fp32))
        for tensor in model.graph.initializer:
            if "cls_score.weight" in tensor.name:
                tensor.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(tensor), tensor.name))
        onnx.save(model, str(out))
        return out

    monkeypatch.setattr(module, "build_fp16", broken_fp16)
    model = tmp_path / "model.onnx"
    shutil.copy(overfit_export["path"], model)
    base, (fp16,) = build_variants(model, overfit_export["data"], ("fp16",))
    assert base["ap50"] - fp16.ap50 > 0.01 and np.isfinite(fp16.ap50)
    assert fp16.refused.startswith(f"AP50 {fp16.ap50:.4f} against fp32's {base['ap50']:.4f}: a loss of")
    assert fp16.refused.endswith("more than the 1.00 allowed")
    assert not fp16.path and not (tmp_path / "model.fp16.onnx").exists()  # not kept
    assert fp16.parity["found_share"] < 1.0  # the parity report shows it too


def test_export_builds_variants_and_reports_them(overfit_run, tmp_path):
    out = tmp_path / "model.onnx"
    result = artdet("export", str(overfit_run), "--out", str(out), "--variants", "fp16,ort", "--no-check")
    report = json.loads(out.with_suffix(".variants.json").read_text())
    assert [v["kind"] for v in report["variants"]] == ["fp16", "ort"]
    assert (tmp_path / "model.fp16.onnx").is_file() and (tmp_path / "model.ort").is_file()
    assert "fp16: AP50" in result.stderr and report["fp32"]["size_bytes"] == out.stat().st_size


def test_a_registered_model_lists_serves_and_downloads_its_variants(tmp_path, torch_home):
    """A server job builds the variants beside the model; the registry lists them with their measures; Detect
    and DownloadModel take a kept one and refuse the others by name."""
    import grpc

    from artdet.v1 import artdet_pb2 as pb
    from artdet.tools.client import push_dataset
    from tests.conftest import ServerProcess, write_shapes_for_server

    server = ServerProcess(tmp_path / "data", "--min-free-mb", "0", env={"TORCH_HOME": str(torch_home)}).start()
    try:
        admin = server.connect("admin")
        push_dataset(admin, "shapes", write_shapes_for_server(tmp_path / "shapes"), progress=False)
        job = admin.training().StartJob(pb.StartJobRequest(dataset_name="shapes", weights="coco",
                                                           parameters=pb.TrainingParameters(
                                                               stage1_epochs=1, stage2_epochs=1, max_size=128,
                                                               batch_size=2, max_iters_per_epoch=2)),
                                        metadata=admin.metadata)
        events = [json.loads(e.payload_json) for e in admin.training().WatchJob(pb.WatchJobRequest(id=job.id),
                                                                                 metadata=admin.metadata)]
        assert events[-1]["type"] == "finished" and events[-1]["state"] == "succeeded", events[-3:]
        built = next(e for e in events if e["type"] == "variants_built")["variants"]
        assert [v["kind"] for v in built] == ["int8", "fp16", "ort"]
        admin.models().ActivateModel(pb.ModelRef(name="shapes", version=1), metadata=admin.metadata)
        (model,) = admin.models().ListModels(pb.ListModelsRequest(), metadata=admin.metadata).models
        variants = {v.kind: v for v in model.variants}
        assert set(variants) == {"int8", "fp16", "ort"}
        folder = server.data_dir / "models" / "shapes" / "1"
        for kind, suffix in (("int8", ".int8.onnx"), ("fp16", ".fp16.onnx"), ("ort", ".ort")):
            variant = variants[kind]
            assert (folder / f"model{suffix}").is_file() != bool(variant.refused)
            if not variant.refused:
                assert variant.size_bytes == (folder / f"model{suffix}").stat().st_size
                report = json.loads(variant.parity_json)
                assert 0 <= report["found"] <= report["boxes"] and report == built[[v["kind"] for v in built].index(
                    kind)]["parity"]  # the registry's figures are the job's measurement
        assert variants["fp16"].size_bytes < 0.55 * model.size_bytes and not variants["fp16"].refused
        # the museum app's token downloads the active version's kept variant
        client = server.connect("client")
        data = b"".join(c.data for c in client.models().DownloadModel(
            pb.ModelRef(name="shapes", variant="fp16"), metadata=client.metadata))
        assert data == (folder / "model.fp16.onnx").read_bytes()
        from tests.test_console import call  # the console's Models page downloads a variant the same way
        status, body, _ = call(server, "GET", "/api/models/shapes/1/onnx?variant=ort", "client")
        assert status == 200 and body == (folder / "model.ort").read_bytes()
        status, body, _ = call(server, "GET", "/api/models/shapes/1/onnx?variant=bf16", "client")
        assert status == 400 and body["message"].startswith("variant: 'bf16' is not one of fp32"), body
        image = next((tmp_path / "shapes").rglob("*.jpg")).read_bytes()
        fp32 = client.detection().Detect(pb.DetectRequest(image=image, score_threshold=0.05), metadata=client.metadata)
        half = client.detection().Detect(pb.DetectRequest(image=image, score_threshold=0.05, variant="fp16"),
                                         metadata=client.metadata)
        assert abs(len(half.detections) - len(fp32.detections)) <= 2  # boxes at the threshold may flicker
        for a, b in zip(fp32.detections[:5], half.detections[:5]):  # the most confident: the same boxes
            assert a.label == b.label and abs(a.score - b.score) < 0.01 and abs(a.box.x1 - b.box.x1) < 1.0
        for kind, code, words in (("bf16", grpc.StatusCode.INVALID_ARGUMENT, "not one of fp32"),):
            with pytest.raises(grpc.RpcError) as caught:
                client.detection().Detect(pb.DetectRequest(image=image, variant=kind), metadata=client.metadata)
            assert caught.value.code() == code and words in caught.value.details()
        if variants["int8"].refused:
            with pytest.raises(grpc.RpcError) as caught:
                client.detection().Detect(pb.DetectRequest(image=image, variant="int8"), metadata=client.metadata)
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert variants["int8"].refused in caught.value.details()
    finally:
        server.stop()
