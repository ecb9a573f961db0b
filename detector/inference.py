"""Torch-free inference: an exported ONNX detector in onnxruntime, boxes in the upright image's pixels."""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Iterable

import numpy as np
import onnxruntime as ort

from artdet.detector.config import SCORE_THRESHOLD
from artdet.detector.errors import InvalidArgument, show
from artdet.detector.images import DEFAULT_MAX_PIXELS, ImageDecodeError, ImageSize, PixelBudget, decode_upright
from artdet.detector.model_card import EMBEDDING_NAME, INPUT_NAME, OUTPUT_NAMES, ModelCard, ModelLoadError
from artdet.detector.results import Detection, DetectionResult


def network_input_size(width: int, height: int, min_size: int, max_size: int) -> tuple[int, int]:
    """The size GeneralizedRCNNTransform resizes an image to (torchvision's rule); 0 for a side too thin."""
    scale = min(min_size / min(width, height), max_size / max(width, height))
    return math.floor(width * scale), math.floor(height * scale)


class Detector:
    """Load once, call `detect` many times (thread-safe: onnxruntime sessions are)."""

    def __init__(self, model_path: str | Path, intra_op_threads: int | None = None,
                 inter_op_threads: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 reduced_decoding: bool = True,
                 decode_budget: PixelBudget | None = None, name: str | None = None, concurrent_runs: int = 2):
        self.path = Path(model_path)
        self.name = name or self.path.name  # how messages refer to the model (never by its server path)
        if not self.path.is_file():
            raise ModelLoadError(f"model {self.name}: file not found")
        options = ort.SessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        if inter_op_threads:
            options.inter_op_num_threads = inter_op_threads
        available = ort.get_available_providers()
        chosen = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelLoadError(f"model {self.name}: cannot be loaded by onnxruntime ({exc})") from None
        self.has_embedding = EMBEDDING_NAME in {output.name for output in self.session.get_outputs()}
        self.card = ModelCard.from_metadata(self.session.get_modelmeta().custom_metadata_map, f"model {self.name}")
        self.max_pixels = max_pixels
        self.reduced_decoding = reduced_decoding
        self.decode_budget = decode_budget
        # each run holds its own intermediate tensors: more runs at once than cores buys memory, not speed
        self._runs = threading.BoundedSemaphore(max(1, concurrent_runs))

    @property
    def class_names(self) -> list[str]:
        return self.card.class_names

    def decode(self, image: bytes | np.ndarray | str | os.PathLike, source: str) -> tuple[np.ndarray, int, int]:
        """(RGB pixels at no more than the network's size, the upright image's width, height) through the gate."""
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
                raise InvalidArgument(f"{source}: expected an HxWx3 uint8 RGB array, got {image.shape} {image.dtype}")
            self._network_size(ImageSize(image.shape[1], image.shape[0]), source)
            return image, image.shape[1], image.shape[0]
        if isinstance(image, (str, os.PathLike)):
            source = str(image)

        def needed(size: ImageSize) -> tuple[int, int] | None:
            network = self._network_size(size, source)
            return network if self.reduced_decoding else None

        array, size = decode_upright(image, self.max_pixels, source, needed_size=needed, budget=self.decode_budget)
        return array, size.width, size.height

    def _network_size(self, size: ImageSize, source: str) -> tuple[int, int]:
        width, height = network_input_size(size.width, size.height, self.card.min_size, self.card.max_size)
        if width < 1 or height < 1:
            raise ImageDecodeError(source, f"{size.width}x{size.height} is too narrow: the network would see it "
                                           f"as {width}x{height} pixels")
        return width, height

    def raw(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._runs:
            boxes, scores, labels = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: pixels})
        return boxes, scores, labels

    def raw_with_embedding(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """raw's outputs and the image embedding (None for a model exported without one)."""
        if not self.has_embedding:
            return (*self.raw(pixels), None)
        with self._runs:
            boxes, scores, labels, embedding = self.session.run([*OUTPUT_NAMES, EMBEDDING_NAME], {INPUT_NAME: pixels})
        return boxes, scores, labels, embedding

    def check_classes(self, classes: Iterable[str] | None) -> set[str] | None:
        if classes is None:
            return None
        wanted = set(classes)
        unknown = wanted - set(self.class_names)
        if unknown:
            raise InvalidArgument(f"classes: {show(sorted(unknown))} not in the model's classes {self.class_names}")
        return wanted

    def result(self, outputs: tuple[np.ndarray, np.ndarray, np.ndarray], pixels: np.ndarray, width: int, height: int,
               score_threshold: float = SCORE_THRESHOLD, top_k: int | None = None,
               wanted: set[str] | None = None) -> DetectionResult:
        """raw's outputs for `pixels` as detections in the upright image's pixels (width x height)."""
        boxes, scores, labels = outputs
        sx, sy = width / pixels.shape[1], height / pixels.shape[0]
        result = DetectionResult(width, height, model=self.name)
        for (x1, y1, x2, y2), score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
            if score < score_threshold:
                continue
            name = self.class_names[int(label) - 1]
            if wanted is not None and name not in wanted:
                continue
            result.detections.append(Detection((x1 * sx, y1 * sy, x2 * sx, y2 * sy), float(score), int(label), name))
            if top_k is not None and len(result.detections) >= top_k:
                break
        return result

    def detect(self, image: bytes | np.ndarray | str | os.PathLike, score_threshold: float = SCORE_THRESHOLD,
               top_k: int | None = None, classes: Iterable[str] | None = None,
               source: str = "image") -> DetectionResult:
        pixels, width, height = self.decode(image, source)
        wanted = self.check_classes(classes)
        return self.result(self.raw(pixels), pixels, width, height, score_threshold, top_k, wanted)
