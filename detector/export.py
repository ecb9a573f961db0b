"""Export a trained detector to ONNX (uint8 HxWx3 in; boxes, scores, labels out) and prove parity.

torch 2.14's default dynamo exporter fails on torchvision's NMS (data-dependent guards), so the
TorchScript-based exporter is used (dynamo=False, opset 17). Score threshold, NMS settings and
detections per image are baked into the graph; callers filter higher thresholds afterwards.

Parity: ONNX must keep what PyTorch keeps, except where NMS may order a near-tie the other way, and every box it
keeps must be one PyTorch scored; an export whose check compared nothing is refused too (compare_detections).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from artdet.detector.checkpoint import load_torch
from artdet.detector.config import EXPORT_SCORE_THRESHOLD
from artdet.detector.files import atomic_write_bytes
from artdet.detector.dataset import DetectionDataset
from artdet.detector.images import decode_image
from artdet.detector.errors import FailedPrecondition
from artdet.detector.inference import Detector
from artdet.detector.model_card import EMBEDDING_NAME, INPUT_NAME, OUTPUT_NAMES, ModelCard
from artdet.detector.models import IncompatibleWeightsError
from artdet.detector.models import model_from_payload

OPSET = 17
PARITY_IMAGES = 4  # validation images always checked (with three resized copies)
RESERVE_PARITY_IMAGES = 28  # more, checked while nothing has been compared


class ExportParityError(FailedPrecondition):
    pass


class _UInt8ImageDetector(nn.Module):
    """One uint8 HxWx3 RGB image in, (boxes, scores, labels[, embedding]) out: the embedding is the deepest FPN
    level the detector computed anyway, averaged over the image and scaled to unit length."""

    def __init__(self, model: nn.Module, embedding: bool = True):
        super().__init__()
        self.model = model
        self.embedding = embedding
        self.eval()  # torch.onnx.export restores the wrapper's mode on the wrapped model afterwards

    def forward(self, image: torch.Tensor):
        tensor = image.permute(2, 0, 1).float() / 255.0
        if not self.embedding:
            output = self.model([tensor])[0]
            return output["boxes"], output["scores"], output["labels"]
        features: dict[str, torch.Tensor] = {}
        hook = self.model.backbone.register_forward_hook(lambda _module, _inputs, output: features.update(output))
        try:
            output = self.model([tensor])[0]
        finally:
            hook.remove()
        deepest = [value for key, value in features.items() if key != "pool"][-1]
        embedding = deepest[0].mean(dim=(1, 2))
        embedding = embedding / embedding.norm().clamp_min(1e-6)
        return output["boxes"], output["scores"], output["labels"], embedding


@dataclass(frozen=True)
class ParityTolerance:
    """How far ONNX may drift from PyTorch and still be the same detection."""

    box_px: float = 1.0  # each box coordinate
    score: float = 0.01  # also the margin within which two scores are a near-tie NMS may order either way
    iou: float = 0.01  # overlap this close to the NMS threshold may tip either way
    same_score: float = 1e-5  # scores this close are one score: a head that cannot tell those boxes apart


@dataclass
class Detections:
    """One image's detections from one runtime: boxes (N, 4) x1 y1 x2 y2, scores (N,), labels (N,)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)

    def __len__(self) -> int:
        return len(self.scores)

    def describe(self, index: int) -> str:
        box = ", ".join(f"{v:.1f}" for v in self.boxes[index])
        return f"label {self.labels[index]} score {self.scores[index]:.4f} at [{box}]"


@dataclass
class ParityReport:
    """What the parity check compared, and what it could not.

    Only boxes scoring at least the export threshold plus the score tolerance are compared (either runtime may drop
    one just above the threshold). Where ONNX kept its per-image maximum, PyTorch's detections are compared only
    above the lowest score it kept, plus that tolerance, too (the cap may cut either of two near-equal scores)."""

    images: int = 0
    sizes: list[tuple[int, int]] = field(default_factory=list)
    torch_detections: int = 0  # PyTorch detections compared
    matched: int = 0  # ... that ONNX kept too: same label, box and score within tolerance
    tied: int = 0  # ... that ONNX lacks, having kept a near-tie (one of PyTorch's boxes) in its place
    onnx_detections: int = 0  # ONNX detections compared
    compared: int = 0  # ... found among PyTorch's boxes: those it kept, or those its NMS or cap dropped
    alternatives: int = 0  # ... of these, the ones PyTorch's NMS or cap dropped
    max_box_error_px: float = 0.0
    max_score_error: float = 0.0
    failures: list[str] = field(default_factory=list)

    def add(self, image: ParityReport, name: str, size: tuple[int, int]) -> None:
        """Fold one image's comparison into this report."""
        self.images += 1
        self.sizes.append(size)
        for key in ("torch_detections", "matched", "tied", "onnx_detections", "compared", "alternatives"):
            setattr(self, key, getattr(self, key) + getattr(image, key))
        self.max_box_error_px = max(self.max_box_error_px, image.max_box_error_px)
        self.max_score_error = max(self.max_score_error, image.max_score_error)
        self.failures += [f"{name}: {failure}" for failure in image.failures]

    def summary(self) -> str:
        tied = f" ({self.tied} tied: ONNX kept a near-tie instead)" if self.tied else ""
        dropped = f", {self.alternatives} of them dropped by PyTorch's NMS or cap" if self.alternatives else ""
        return (f"{self.matched} of {self.torch_detections} PyTorch detections matched by ONNX{tied}; "
                f"{self.compared} of {self.onnx_detections} ONNX detections found among PyTorch's boxes{dropped}; "
                f"max box error {self.max_box_error_px:.3f} px, max score error {self.max_score_error:.4f}; "
                f"{self.images} images")

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "sizes": [list(s) for s in self.sizes], "summary": self.summary()}


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


def _torch_detect(model: nn.Module, pixels: np.ndarray) -> Detections:
    with torch.inference_mode():
        boxes, scores, labels = _UInt8ImageDetector(model, embedding=False)(torch.from_numpy(pixels.copy()))
    return Detections(boxes.numpy(), scores.numpy(), labels.numpy())


@contextmanager
def _without_nms(model: nn.Module, margin: float = 1e-3) -> Iterator[nn.Module]:
    """The model scoring every box either runtime's NMS could keep: neither the RPN's NMS nor the heads' drops any
    proposal or box (no two boxes overlap by more than 1), nor does a cap after them, and the RPN's top-N
    proposals per level take in every anchor within `margin` (in logits) of the N-th one's objectness: where
    anchors tie at the cut, either runtime's top-N may take any of them. These are torchvision's private knobs."""
    heads, rpn = model.roi_heads, model.rpn
    saved = heads.nms_thresh, heads.detections_per_img, rpn.nms_thresh, dict(rpn._post_nms_top_n)
    heads.nms_thresh, heads.detections_per_img, rpn.nms_thresh = 1.0, 1 << 62, 1.0
    rpn._post_nms_top_n["testing"] = 1 << 62
    top_n_idx = rpn._get_top_n_idx

    def top_n_with_ties(objectness: torch.Tensor, num_anchors_per_level: list[int]) -> torch.Tensor:
        n = widest = rpn.pre_nms_top_n()
        for level in objectness.split(num_anchors_per_level, dim=1):
            if level.shape[1] > n:
                cut = level.topk(n, dim=1).values[:, -1:]
                widest = max(widest, int((level >= cut - margin).sum(dim=1).max()))
        pre_nms = dict(rpn._pre_nms_top_n)
        rpn._pre_nms_top_n["testing"] = widest
        try:
            return top_n_idx(objectness, num_anchors_per_level)
        finally:
            rpn._pre_nms_top_n = pre_nms

    rpn._get_top_n_idx = top_n_with_ties
    try:
        yield model
    finally:
        del rpn._get_top_n_idx
        heads.nms_thresh, heads.detections_per_img, rpn.nms_thresh, rpn._post_nms_top_n = saved


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in `a` with every box in `b`."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a, area_b = ((x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1]) for x in (a, b))
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def _twins(a: Detections, b: Detections, tolerance: ParityTolerance) -> tuple[np.ndarray, np.ndarray]:
    """For every pair (one of `a`, one of `b`): whether they are one detection within tolerance; the box error."""
    box_error = np.abs(a.boxes[:, None, :] - b.boxes[None, :, :]).max(axis=2)
    same = ((a.labels[:, None] == b.labels[None, :]) & (box_error <= tolerance.box_px)
            & (np.abs(a.scores[:, None] - b.scores[None, :]) <= tolerance.score))
    return same, box_error


def _could_suppress(a: Detections, b: Detections, nms_iou: float, tolerance: ParityTolerance) -> np.ndarray:
    """For every pair (one of `a`, one of `b`): whether NMS could have dropped the one of `a` for the one of `b`
    (same label, scoring no lower within tolerance, overlapping past the threshold within tolerance)."""
    return ((a.labels[:, None] == b.labels[None, :]) & (b.scores[None, :] >= a.scores[:, None] - tolerance.score)
            & (_iou(a.boxes, b.boxes) > nms_iou - tolerance.iou))


def _nearest(detections: Detections, label: int, box_error: np.ndarray, score: float) -> str:
    """How far the nearest detection of `label` is (box_error: each detection's distance in px)."""
    same = np.flatnonzero(detections.labels == label)
    if not len(same):
        return f"none of label {label}"
    best = same[box_error[same].argmin()]
    return (f"nearest of that label: box off by {box_error[best]:.2f} px, "
            f"score by {abs(detections.scores[best] - score):.4f}")


def compare_detections(torch_out: Detections, onnx_out: Detections, candidates: Detections, threshold: float,
                       nms_iou: float, cap: int, tolerance: ParityTolerance = ParityTolerance()) -> ParityReport:
    """One image: PyTorch's and ONNX's detections, and `candidates`, every box PyTorch scores above `threshold`
    before any NMS or per-image `cap` (see _without_nms).

    Every ONNX detection must be one of PyTorch's boxes (same label, box and score within tolerance): one it kept,
    or one its NMS or cap dropped; and no two boxes ONNX kept may overlap clearly past the NMS threshold. Every
    PyTorch detection must be kept by ONNX too, unless it is tied: ONNX kept, in its place, one of PyTorch's boxes
    - scoring no lower (within tolerance) and overlapping it past the NMS threshold, or overlapping so a box of
      PyTorch's that overlaps it so: NMS, in the heads or in the RPN, ordered near-equal scores the other way, and
      what it kept after that follows;
    - or scoring alike, where other boxes of PyTorch's score exactly what it does: a head that cannot tell boxes
      apart, whose proposals the RPN cannot tell apart either, most likely; which of those pass its per-level
      top-N and reach the heads at all is arbitrary.
    """
    tol, report = tolerance, ParityReport()
    score_floor = threshold + tol.score  # below it, either runtime may drop a box the other keeps
    kept_floor = score_floor  # below it, ONNX's cap may have cut a box PyTorch kept
    if len(onnx_out) >= cap:
        kept_floor = max(kept_floor, float(onnx_out.scores.min()) + tol.score)
    twins, box_error = _twins(torch_out, onnx_out, tol)
    candidate_twins, candidate_error = _twins(onnx_out, candidates, tol)
    verified = candidate_twins.any(axis=1)  # ONNX boxes that are PyTorch's (the rest fail below)
    # a PyTorch box C stands in for P (C may be P), and ONNX kept F, one of PyTorch's boxes, which is C or drops it
    stands_in = _could_suppress(torch_out, candidates, nms_iou, tol)
    kept_for = _could_suppress(candidates, onnx_out, nms_iou, tol) & verified[None, :]
    displaced = (stands_in.astype(np.int64) @ kept_for.astype(np.int64)) > 0
    # another of PyTorch's boxes scores exactly what P does, and ONNX kept that very box in P's stead
    shares_score = ((torch_out.labels[:, None] == candidates.labels[None, :])
                    & (np.abs(torch_out.scores[:, None] - candidates.scores[None, :]) <= tol.same_score)
                    & ~_twins(torch_out, candidates, tol)[0])
    same_score = (shares_score.astype(np.int64) @ candidate_twins.T.astype(np.int64)).any(axis=1)

    def record(box: float, score: float) -> None:
        report.max_box_error_px = max(report.max_box_error_px, float(box))
        report.max_score_error = max(report.max_score_error, float(score))

    for i in np.flatnonzero(torch_out.scores >= kept_floor):
        report.torch_detections += 1
        if twins[i].any():
            report.matched += 1
        elif displaced[i].any() or same_score[i]:
            report.tied += 1
        else:
            nearest = _nearest(onnx_out, torch_out.labels[i], box_error[i], torch_out.scores[i])
            report.failures.append(f"PyTorch {torch_out.describe(i)} has no ONNX twin ({nearest}), nor a near-tie "
                                   "that ONNX's NMS could have kept in its place")
    for j in np.flatnonzero(onnx_out.scores >= score_floor):
        report.onnx_detections += 1
        same = candidate_twins[j]  # the candidates hold every box PyTorch kept, too
        if not verified[j]:
            nearest = _nearest(candidates, onnx_out.labels[j], candidate_error[j], onnx_out.scores[j])
            report.failures.append(f"ONNX {onnx_out.describe(j)} is none of PyTorch's boxes, kept or dropped "
                                   f"({nearest})")
            continue
        k = np.flatnonzero(same)[candidate_error[j, same].argmin()]
        report.compared += 1
        report.alternatives += not twins[:, j].any()
        record(candidate_error[j, k], abs(candidates.scores[k] - onnx_out.scores[j]))
    overlap = np.triu(_iou(onnx_out.boxes, onnx_out.boxes), k=1)
    overlap[onnx_out.labels[:, None] != onnx_out.labels[None, :]] = 0.0
    for i, j in zip(*np.nonzero(overlap > nms_iou + tol.iou)):
        report.failures.append(f"ONNX kept {onnx_out.describe(i)} and {onnx_out.describe(j)}, which overlap by IoU "
                               f"{overlap[i, j]:.2f}, past the NMS threshold {nms_iou}")
    return report


def check_parity(model: nn.Module, detector: Detector, images: Iterable[np.ndarray], threshold: float,
                 tolerance: ParityTolerance = ParityTolerance(), reserve: Iterable[np.ndarray] = ()) -> ParityReport:
    """Compare PyTorch and ONNX (see compare_detections) on every one of `images`, then on `reserve` images, one
    at a time, for as long as nothing has been compared."""
    report = ParityReport()

    def check(pixels: np.ndarray) -> None:
        torch_out = _torch_detect(model, pixels)
        with _without_nms(model):
            candidates = _torch_detect(model, pixels)
        one = compare_detections(torch_out, Detections(*detector.raw(pixels)), candidates, threshold,
                                 model.roi_heads.nms_thresh, model.roi_heads.detections_per_img, tolerance)
        report.add(one, f"image {report.images}", (pixels.shape[1], pixels.shape[0]))

    for pixels in images:
        check(pixels)
    reserve = iter(reserve)
    while not report.compared and (pixels := next(reserve, None)) is not None:
        check(pixels)
    return report


def require_parity(report: ParityReport, threshold: float, out: str | Path,
                   tolerance: ParityTolerance = ParityTolerance()) -> None:
    """Raise unless the check passed and compared something: a check that compared nothing proves nothing."""
    if report.failures:
        raise ExportParityError(
            f"ONNX output differs from PyTorch on {len(report.failures)} detection(s); not writing {out}:\n  "
            + "\n  ".join(report.failures[:20]))
    if not report.compared:
        sizes = ", ".join(f"{w}x{h}" for w, h in report.sizes)
        raise ExportParityError(
            f"the parity check compared nothing, so nothing shows that the ONNX graph computes what PyTorch does; "
            f"not writing {out}. On {report.images} images ({sizes}) there was no detection scoring "
            f"{threshold + tolerance.score:.2f} or more to compare: the model detects nothing there. Train longer, "
            "check against images it detects objects on (`artdet export --val`), or export without the check "
            "(`artdet export --no-check`).")


RESIZED_COPIES = ((203, 317), (480, 360), (640, 211))  # sizes of the first image's copies


def parity_image_count(dataset: DetectionDataset | None) -> int:
    """How many images parity_images gives, without decoding them (the ETA's export estimate)."""
    return max(1, min(PARITY_IMAGES, len(dataset.images) if dataset else 0)) + len(RESIZED_COPIES)


def parity_images(dataset: DetectionDataset | None, count: int = PARITY_IMAGES) -> list[np.ndarray]:
    """Validation images plus resized copies, so at least three input sizes are checked."""
    from PIL import Image

    base = [decode_image(im.path) for im in (dataset.images[:count] if dataset else [])]
    if not base:
        rng = np.random.default_rng(0)
        base = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)]
    sized = [np.asarray(Image.fromarray(base[0]).resize(size)) for size in RESIZED_COPIES]
    return base + sized


def reserve_parity_images(dataset: DetectionDataset | None, start: int = PARITY_IMAGES,
                          count: int = RESERVE_PARITY_IMAGES) -> Iterator[np.ndarray]:
    """More validation images, decoded one at a time, for when the first ones compare nothing."""
    for record in (dataset.images[start:start + count] if dataset else []):
        yield decode_image(record.path)


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
            input_names=[INPUT_NAME], output_names=[*OUTPUT_NAMES, EMBEDDING_NAME],
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
            report = check_parity(model, Detector(tmp), images, parity_threshold, reserve=reserve_parity_images(val))
            require_parity(report, parity_threshold, out)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, lambda handle: handle.write(tmp.read_bytes()))
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": str(out), "checkpoint": str(checkpoint_path), "metadata": metadata,
            "parity": report.to_dict() if report else None}
