"""Export a trained detector to ONNX (uint8 HxWx3 in; boxes, scores, labels out) and prove parity.

torch 2.14's default dynamo exporter fails on torchvision's NMS (data-dependent guards), so the
TorchScript-based exporter is used (dynamo=False, opset 17). Score threshold, NMS settings and
detections per image are baked into the graph; callers filter higher thresholds afterwards.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from detector.checkpoint import load_torch
from detector.config import EXPORT_SCORE_THRESHOLD
from detector.files import atomic_write_bytes
from detector.dataset import DetectionDataset
from detector.images import decode_image
from detector.errors import FailedPrecondition
from detector.inference import Detector
from detector.model_card import INPUT_NAME, OUTPUT_NAMES, ModelCard
from detector.models import IncompatibleWeightsError
from detector.models import model_from_payload

OPSET = 17


class ExportParityError(FailedPrecondition):
    pass


class _UInt8ImageDetector(nn.Module):
    """One uint8 HxWx3 RGB image in, (boxes, scores, labels) out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.eval()  # torch.onnx.export restores the wrapper's mode on the wrapped model afterwards

    def forward(self, image: torch.Tensor):
        tensor = image.permute(2, 0, 1).float() / 255.0
        output = self.model([tensor])[0]
        return output["boxes"], output["scores"], output["labels"]


@dataclass
class ParityReport:
    images: int = 0
    sizes: list[tuple[int, int]] = field(default_factory=list)
    torch_detections: int = 0
    matched: int = 0
    max_box_error_px: float = 0.0
    max_score_error: float = 0.0
    tied: int = 0  # detections whose score ties another's: NMS may keep either, so not compared
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "sizes": [list(s) for s in self.sizes]}


def load_run_model(source: str | Path) -> tuple[dict[str, Any], Path]:
    """A model from a run directory (its best checkpoint) or a checkpoint file."""
    path = Path(source)
    if path.is_dir():
        path = path / "checkpoints" / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path} (expected a run directory or a .pt file)")
    payload = load_torch(path)
    if "arch" not in payload or "class_names" not in payload:
        raise IncompatibleWeightsError(f"{path}: not an artdet checkpoint")
    return payload, path


def export_ready_model(payload: dict[str, Any], score_threshold: float = EXPORT_SCORE_THRESHOLD) -> nn.Module:
    """The PyTorch model exactly as the ONNX graph will compute it."""
    model = model_from_payload(payload)
    model.roi_heads.score_thresh = score_threshold
    # With an RPN score threshold (the 320 model's 0.05) an image can yield zero proposals, and the traced
    # graph's Reshape(0, -1) then fails in onnxruntime; without it the RPN always proposes its top-N boxes.
    model.rpn.score_thresh = 0.0
    return model.eval()


def _torch_detect(model: nn.Module, pixels: np.ndarray):
    with torch.inference_mode():
        boxes, scores, labels = _UInt8ImageDetector(model)(torch.from_numpy(pixels.copy()))
    return boxes.numpy(), scores.numpy(), labels.numpy()


def _has_tie(scores: np.ndarray, labels: np.ndarray, index: int, tol: float = 1e-5) -> bool:
    same = (labels == labels[index]) & (np.abs(scores - scores[index]) <= tol)
    return int(same.sum()) > 1


def check_parity(model: nn.Module, detector: Detector, images: list[np.ndarray], threshold: float,
                 box_tol: float = 1.0, score_tol: float = 0.01) -> ParityReport:
    """Every PyTorch detection scoring >= threshold + score_tol needs an ONNX twin: same label,
    box within `box_tol` px, score within `score_tol`."""
    report = ParityReport()
    for index, pixels in enumerate(images):
        report.images += 1
        report.sizes.append((pixels.shape[1], pixels.shape[0]))
        t_boxes, t_scores, t_labels = _torch_detect(model, pixels)
        o_boxes, o_scores, o_labels = detector.raw(pixels)
        floor = threshold + score_tol
        if len(t_scores) >= model.roi_heads.detections_per_img:
            # at the per-image cap, near-ties with the last kept score may be cut differently
            floor = max(floor, float(t_scores.min()) + score_tol)
        for index_in_image, (box, score, label) in enumerate(zip(t_boxes, t_scores, t_labels)):
            if score < floor:
                continue
            report.torch_detections += 1
            if _has_tie(t_scores, t_labels, index_in_image):
                report.tied += 1
                continue
            same = o_labels == label
            if not same.any():
                report.failures.append(f"image {index}: no ONNX detection of label {label} (score {score:.3f})")
                continue
            errors = np.abs(o_boxes[same] - box).max(axis=1)
            best = int(errors.argmin())
            box_error, score_error = float(errors[best]), float(abs(o_scores[same][best] - score))
            if box_error > box_tol or score_error > score_tol:
                report.failures.append(f"image {index}: label {label} box off by {box_error:.2f} px, "
                                       f"score by {score_error:.4f}")
                continue
            report.matched += 1
            report.max_box_error_px = max(report.max_box_error_px, box_error)
            report.max_score_error = max(report.max_score_error, score_error)
    return report


def parity_images(dataset: DetectionDataset | None, count: int = 4) -> list[np.ndarray]:
    """Validation images plus resized copies, so at least three input sizes are checked."""
    from PIL import Image

    base = [decode_image(im.path) for im in (dataset.images[:count] if dataset else [])]
    if not base:
        rng = np.random.default_rng(0)
        base = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)]
    sized = [np.asarray(Image.fromarray(base[0]).resize(size)) for size in ((203, 317), (480, 360), (640, 211))]
    return base + sized


def export_onnx(source: str | Path, out: str | Path, val: DetectionDataset | None = None,
                score_threshold: float = EXPORT_SCORE_THRESHOLD, check: bool = True,
                parity_threshold: float = EXPORT_SCORE_THRESHOLD) -> dict[str, Any]:
    """Export, validate with onnx.checker, embed metadata, check parity; write `out` only if all pass."""
    payload, checkpoint_path = load_run_model(source)
    model = export_ready_model(payload, score_threshold)
    transform = model.transform
    card = ModelCard(class_names=list(payload["class_names"]), arch=payload["arch"],
                     min_size=transform.min_size[0], max_size=transform.max_size, score_threshold=score_threshold,
                     nms_iou=model.roi_heads.nms_thresh, detections_per_image=model.roi_heads.detections_per_img,
                     category_ids=list(payload.get("category_ids") or []), run_id=str(payload.get("run_id", "")),
                     val_map=payload.get("val_map"))
    metadata = card.to_metadata()
    out = Path(out)
    tmp = out.with_name(f".{out.name}.export")
    # trace on a real image: a blank one yields no proposals, and the tracer would bake in empty shapes
    images = parity_images(val)
    sample = torch.from_numpy(images[0].copy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about data-dependent shapes are expected here
        torch.onnx.export(
            _UInt8ImageDetector(model), (sample,), str(tmp), dynamo=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
            dynamic_axes={INPUT_NAME: {0: "height", 1: "width"}, "boxes": {0: "detections"},
                          "scores": {0: "detections"}, "labels": {0: "detections"}},
        )
    try:
        proto = onnx.load(str(tmp))
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        report = None
        if check:
            report = check_parity(model, Detector(tmp), images, parity_threshold)
            if report.failures:
                raise ExportParityError(
                    f"ONNX output differs from PyTorch on {len(report.failures)} detection(s); not writing {out}:\n  "
                    + "\n  ".join(report.failures[:20]))
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, lambda handle: handle.write(tmp.read_bytes()))
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": str(out), "checkpoint": str(checkpoint_path), "metadata": metadata,
            "parity": report.to_dict() if report else None}
