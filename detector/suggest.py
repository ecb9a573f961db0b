"""Which unlabelled images to label next: the ones the model is least sure of, spread over what it sees.

- uncertainty: the mean binary entropy (in bits) of the top detections' scores; a score near 0.5 says the
  model cannot tell, near 0 or 1 that it can. An image with no detection at all scores 0.
- disagreement: the image and its mirror image should give mirrored boxes; the share of confident boxes
  (score >= DISAGREEMENT_SCORE) one view finds and the other misses, matched boxes counting 1 - IoU.
- diversity: among the best 3 x budget by uncertainty + disagreement, k-center greedy on the model's image
  embeddings picks, one at a time, the candidate farthest (cosine distance) from every image picked before it
  and every labelled one, so the suggestions are not near-duplicates of each other or of what is labelled.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from artdet.detector.config import EXPORT_SCORE_THRESHOLD
from artdet.detector.inference import Detector
from artdet.detector.results import DetectionResult, box_iou

TOP_DETECTIONS = 5
DISAGREEMENT_SCORE = 0.3
MATCH_IOU = 0.5
CANDIDATES_PER_PICK = 3
PRE_ANNOTATION_SCORE = EXPORT_SCORE_THRESHOLD  # every box the exported graph keeps
MAX_PRE_ANNOTATIONS = 50  # boxes kept per pool image: memory stays small per image whatever the pool


@dataclass
class PoolImage:
    """One pool image as the model sees it."""

    file_name: str
    result: DetectionResult  # every box the graph returns (pre-annotations)
    uncertainty: float
    disagreement: float
    embedding: np.ndarray | None
    flipped_only: int = 0  # confident boxes only the mirrored view found
    original_only: int = 0

    @property
    def score(self) -> float:
        return self.uncertainty + self.disagreement


@dataclass
class Suggestion:
    image: PoolImage
    rank: int
    novelty: float | None  # cosine distance to the nearest image picked before it or labelled
    reasons: list[str] = field(default_factory=list)


def _entropy_bits(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def uncertainty(scores: Iterable[float]) -> float:
    top = sorted(scores, reverse=True)[:TOP_DETECTIONS]
    return sum(_entropy_bits(s) for s in top) / len(top) if top else 0.0


def disagreement(original: DetectionResult, flipped: DetectionResult) -> tuple[float, int, int]:
    """(disagreement in [0, 1], boxes only the original found, boxes only the mirrored view found); `flipped`'s
    boxes are already mirrored back."""
    a = [d for d in original.detections if d.score >= DISAGREEMENT_SCORE]
    b = [d for d in flipped.detections if d.score >= DISAGREEMENT_SCORE]
    pairs = sorted(((box_iou(x.box, y.box), i, j) for i, x in enumerate(a) for j, y in enumerate(b)
                    if x.label == y.label), reverse=True)
    used_a, used_b, cost = set(), set(), 0.0
    for overlap, i, j in pairs:
        if overlap < MATCH_IOU or i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        cost += 1 - overlap
    only_a, only_b = len(a) - len(used_a), len(b) - len(used_b)
    total = len(used_a) + only_a + only_b
    return ((cost + only_a + only_b) / total if total else 0.0), only_a, only_b


def analyse(detector: Detector, image: bytes | str, file_name: str) -> PoolImage:
    """Run the model on the image and on its mirror image (ImageDecodeError for an unreadable one)."""
    pixels, width, height = detector.decode(image, file_name)
    boxes, scores, labels, embedding = detector.raw_with_embedding(pixels)
    result = detector.result((boxes, scores, labels), pixels, width, height, PRE_ANNOTATION_SCORE,
                             MAX_PRE_ANNOTATIONS)
    mirrored = detector.result(detector.raw(np.ascontiguousarray(pixels[:, ::-1])), pixels, width, height,
                               PRE_ANNOTATION_SCORE)
    mirrored.detections = [dataclasses.replace(d, box=(width - d.box[2], d.box[1], width - d.box[0], d.box[3]))
                           for d in mirrored.detections]
    disagree, only_original, only_flipped = disagreement(result, mirrored)
    return PoolImage(file_name, result, uncertainty(d.score for d in result.detections), disagree,
                     None if embedding is None else np.asarray(embedding, np.float32).reshape(-1),
                     only_flipped, only_original)


def embed(detector: Detector, image: bytes | str, file_name: str) -> np.ndarray | None:
    """The model's embedding of an image (one run, no mirror image); None for a model exported without one."""
    pixels, _, _ = detector.decode(image, file_name)
    embedding = detector.raw_with_embedding(pixels)[3]
    return None if embedding is None else np.asarray(embedding, np.float32).reshape(-1)


def _reasons(image: PoolImage) -> list[str]:
    scores = sorted((d.score for d in image.result.detections), reverse=True)[:TOP_DETECTIONS]
    reasons = [f"uncertainty {image.uncertainty:.2f}: " + (
        f"top scores {', '.join(f'{s:.2f}' for s in scores)}" if scores else "the model finds nothing here")]
    if image.disagreement > 0:
        reasons.append(f"flip disagreement {image.disagreement:.2f}: {image.original_only} box(es) found only in "
                       f"the image, {image.flipped_only} only in its mirror image")
    return reasons


def rank(pool: list[PoolImage], budget: int, diversity: bool = True,
         labelled: np.ndarray | None = None) -> tuple[list[Suggestion], list[str]]:
    """The `budget` images to label first, best first, and notes (e.g. why diversity was not used)."""
    by_score = sorted(pool, key=lambda image: (-image.score, image.file_name))
    notes: list[str] = []
    if diversity and any(image.embedding is None for image in pool):
        notes.append("diversity not used: the model was exported without image embeddings (export it again)")
        diversity = False
    if not diversity or not pool:
        return [Suggestion(image, rank + 1, None, _reasons(image))
                for rank, image in enumerate(by_score[:budget])], notes
    candidates = by_score[:max(budget, CANDIDATES_PER_PICK * budget)]
    vectors = np.stack([image.embedding for image in candidates])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-6)
    nearest = np.full(len(candidates), np.inf)
    if labelled is not None and len(labelled):
        seeds = labelled / np.linalg.norm(labelled, axis=1, keepdims=True).clip(1e-6)
        nearest = (1 - vectors @ seeds.T).min(axis=1)
    chosen: list[Suggestion] = []
    open_ = list(range(len(candidates)))
    while open_ and len(chosen) < budget:
        # the farthest from everything picked or labelled; before anything is, the highest score
        pick = max(open_, key=lambda i: (nearest[i], candidates[i].score, -i))
        novelty = None if math.isinf(nearest[pick]) else min(max(float(nearest[pick]), 0.0), 2.0)
        reasons = _reasons(candidates[pick])
        if novelty is not None:
            reasons.append(f"novelty {novelty:.2f}: cosine distance to the nearest image picked before it or "
                           "labelled")
        chosen.append(Suggestion(candidates[pick], len(chosen) + 1, novelty, reasons))
        open_.remove(pick)
        nearest = np.minimum(nearest, 1 - vectors @ vectors[pick])
    return chosen, notes
