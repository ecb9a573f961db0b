"""Smaller and faster forms of an exported fp32 model, each measured against it before it is kept.

- int8: onnxruntime static quantisation (QDQ), calibrated on training images: the weights and activations
  of the convolutions (backbone, FPN, RPN head) and of the box head's fully connected layers, which hold
  most of the bytes; everything else (resizing, box decoding, NMS, RoIAlign) stays fp32.
- fp16: the weights stored in half precision and widened when the session loads them: half the download,
  fp32 arithmetic (onnxruntime's CPU and WebAssembly kernels compute these ops in fp32).
- ort: onnxruntime's own format of the fp32 graph, basic optimisations applied, for onnxruntime-mobile.

Each variant gets its validation mAP / AP50 and a parity report against fp32 on the same images; one that
loses more than `max_ap50_drop` AP50 is not kept, and the reason is recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from artdet.detector.coco_eval import evaluate_results
from artdet.detector.config import MAX_VARIANT_AP50_DROP
from artdet.detector.dataset import DetectionDataset
from artdet.detector.errors import redact_paths
from artdet.detector.images import decode_image
from artdet.detector.inference import Detector
from artdet.detector.model_card import INPUT_NAME, VARIANT_SUFFIXES
from artdet.detector.results import DetectionResult, box_iou

VARIANTS = tuple(VARIANT_SUFFIXES)
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul"]
CALIBRATION_IMAGES = 32
PARITY_SCORE = 0.5  # fp32 boxes the parity report follows: the ones an app would show
PARITY_IOU = 0.5
HALF_MIN_ELEMENTS = 1024  # smaller tensors (shapes, anchors, scalars) stay fp32: no saving, only risk


@dataclass
class VariantReport:
    kind: str
    path: str = ""  # empty when refused
    size_bytes: int = 0
    map: float = 0.0
    ap50: float = 0.0
    parity: dict[str, Any] = field(default_factory=dict)
    latency_ms_p50: float = 0.0
    refused: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _calibration_reader(images: list[np.ndarray]):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter({INPUT_NAME: image} for image in images)

        def get_next(self):
            return next(self.items, None)

    return Reader()


def build_int8(fp32: Path, out: Path, calibration: list[np.ndarray]) -> Path:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(str(fp32), str(out), _calibration_reader(calibration), quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                    op_types_to_quantize=QUANTIZED_OPS)
    _copy_metadata(fp32, out)
    return out


def build_fp16(fp32: Path, out: Path) -> Path:
    """Large float initializers stored as float16, each widened back by a Cast the session folds at load."""
    model = onnx.load(str(fp32))
    graph = model.graph
    kept, casts, seen = [], [], set()
    for tensor in graph.initializer:
        if tensor.name in seen:  # the exporter may list a shared weight twice
            continue
        seen.add(tensor.name)
        if tensor.data_type != onnx.TensorProto.FLOAT or np.prod(tensor.dims) < HALF_MIN_ELEMENTS:
            kept.append(tensor)
            continue
        kept.append(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), f"{tensor.name}__fp16"))
        casts.append(helper.make_node("Cast", [kept[-1].name], [tensor.name], to=onnx.TensorProto.FLOAT,
                                      name=f"{tensor.name}__widen"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for node in reversed(casts):
        graph.node.insert(0, node)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def build_ort(fp32: Path, out: Path) -> Path:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(out)
    options.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(fp32), options, providers=["CPUExecutionProvider"])
    return out


def _copy_metadata(source: Path, target: Path) -> None:
    """The model card travels in the metadata; quantisation drops it."""
    card = {p.key: p.value for p in onnx.load(str(source), load_external_data=False).metadata_props}
    model = onnx.load(str(target))
    del model.metadata_props[:]
    for key, value in card.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(target))


def detect_all(detector: Detector, images: list[np.ndarray]) -> tuple[list[DetectionResult], list[float]]:
    results, times = [], []
    for image in images:
        started = time.perf_counter()
        results.append(detector.detect(image, score_threshold=0.0))
        times.append((time.perf_counter() - started) * 1000)
    return results, times


def parity(reference: list[DetectionResult], variant: list[DetectionResult]) -> dict[str, Any]:
    """How the variant's boxes follow fp32's confident ones (score >= PARITY_SCORE), image by image: the share
    it finds (same label, IoU >= 0.5), their mean IoU and the mean and largest score change."""
    found, ious, score_changes, total = 0, [], [], 0
    for ref, var in zip(reference, variant):
        for box in (d for d in ref.detections if d.score >= PARITY_SCORE):
            total += 1
            best = max(((box_iou(box.box, other.box), other) for other in var.detections if other.label == box.label),
                       default=(0.0, None), key=lambda pair: pair[0])
            if best[1] is not None and best[0] >= PARITY_IOU:
                found += 1
                ious.append(best[0])
                score_changes.append(abs(best[1].score - box.score))
    return {"boxes": total, "found": found, "found_share": round(found / total, 4) if total else 1.0,
            "mean_iou": round(float(np.mean(ious)), 4) if ious else None,
            "mean_score_change": round(float(np.mean(score_changes)), 4) if score_changes else None,
            "max_score_change": round(float(np.max(score_changes)), 4) if score_changes else None}


def build_variants(fp32: str | Path, val: DetectionDataset, kinds: Iterable[str] = VARIANTS,
                   calibration: Iterable[str | Path] = (), max_ap50_drop: float = MAX_VARIANT_AP50_DROP
                   ) -> tuple[dict[str, Any], list[VariantReport]]:
    """Build each variant beside `fp32` (model.int8.onnx, model.fp16.onnx, model.ort), measure it on `val`
    against fp32, and keep it unless it loses more than `max_ap50_drop` AP50. Returns (fp32's report, the
    variants' reports)."""
    fp32 = Path(fp32)
    kinds = list(kinds)
    unknown = set(kinds) - set(VARIANTS)
    if unknown:
        raise ValueError(f"variants: unknown {sorted(unknown)}; choose from {list(VARIANTS)}")
    reference_detector = Detector(fp32)
    images = [decode_image(record.path, source=record.file_name) for record in val.images]
    reference, times = detect_all(reference_detector, images)
    base = evaluate_results(val, reference)
    base_report = {"kind": "fp32", "path": str(fp32), "size_bytes": fp32.stat().st_size, "map": base["map"],
                   "ap50": base["ap50"], "latency_ms_p50": round(float(np.median(times)), 2)}
    calibration = list(calibration)
    reports: list[VariantReport] = []
    for kind in kinds:
        out = fp32.with_name(fp32.name.removesuffix(".onnx") + VARIANT_SUFFIXES[kind])
        try:
            if kind == "int8":
                calibrate = [decode_image(p, source=Path(p).name) for p in calibration[:CALIBRATION_IMAGES]]
                if not calibrate:
                    raise ValueError("int8 needs calibration images (the training set's)")
                build_int8(fp32, out, calibrate)
            elif kind == "fp16":
                build_fp16(fp32, out)
            else:
                build_ort(fp32, out)
            detector = Detector(out)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's and onnx's own errors: the variant is not kept
            out.unlink(missing_ok=True)
            reports.append(VariantReport(kind, refused=f"could not be built ({type(exc).__name__}: "
                                                       f"{redact_paths(str(exc))[:300]})"))
            continue
        results, times = detect_all(detector, images)
        metrics = evaluate_results(val, results)
        report = VariantReport(kind, str(out), out.stat().st_size, metrics["map"], metrics["ap50"],
                               parity(reference, results), round(float(np.median(times)), 2))
        drop = base["ap50"] - metrics["ap50"]
        if drop > max_ap50_drop:
            report.refused = (f"AP50 {metrics['ap50']:.4f} against fp32's {base['ap50']:.4f}: a loss of "
                              f"{100 * drop:.2f} points, more than the {100 * max_ap50_drop:.2f} allowed")
            out.unlink()
            report.path = ""
        reports.append(report)
    return base_report, reports
