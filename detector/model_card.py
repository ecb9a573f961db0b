"""What an exported model is: classes, architecture, input sizes and the settings baked into its graph.

Written into the ONNX file's metadata by the export, read back by the Detector, the model registry and
`artdet models download`; the ONNX file carries its own card wherever it goes (an app, another server).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from artdet.detector.errors import DataCorrupted

INPUT_NAME = "image"  # uint8 [H, W, 3] RGB, any size; the graph resizes and normalises
OUTPUT_NAMES = ("boxes", "scores", "labels")
# the smaller forms built beside model.onnx (detector/variants.py), by kind: model<suffix>
VARIANT_SUFFIXES = {"int8": ".int8.onnx", "fp16": ".fp16.onnx", "ort": ".ort"}
EMBEDDING_NAME = "embedding"  # models exported since issue 14 also give one image embedding (active learning)
PRODUCER = "artdet"


class ModelLoadError(DataCorrupted):
    pass


@dataclass(frozen=True)
class ModelCard:
    class_names: list[str]
    arch: str
    min_size: int  # the graph resizes an image's shorter side to this ...
    max_size: int  # ... unless its longer side would exceed this
    score_threshold: float  # lowest score the graph returns
    nms_iou: float
    detections_per_image: int
    category_ids: list[int] = field(default_factory=list)  # the COCO category id of each class, in order
    run_id: str = ""
    val_map: float | None = None  # validation mAP of the checkpoint it was exported from

    def to_metadata(self) -> dict[str, str]:
        return {
            "class_names": json.dumps(self.class_names),
            "category_ids": json.dumps(self.category_ids or list(range(1, len(self.class_names) + 1))),
            "architecture": self.arch,
            "run_id": self.run_id,
            "val_map": "" if self.val_map is None else f"{self.val_map:.6f}",
            "score_threshold": str(self.score_threshold),
            "nms_iou": str(self.nms_iou),
            "detections_per_image": str(self.detections_per_image),
            "min_size": str(self.min_size),
            "max_size": str(self.max_size),
            "input": f"{INPUT_NAME}: uint8 [height, width, 3] RGB, any size, EXIF-upright",
            "outputs": "boxes: float32 [N, 4] x1,y1,x2,y2 input pixels; scores: float32 [N]; labels: int64 [N], "
                       f"1-based index into class_names; {EMBEDDING_NAME}: float32 [D], the deepest FPN level "
                       "averaged over the image, unit length",
            "producer": PRODUCER,
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str) -> "ModelCard":
        """ModelLoadError naming `source` when the metadata is not an artdet model's."""
        try:
            class_names = json.loads(metadata["class_names"])
            category_ids = json.loads(metadata.get("category_ids") or "[]")
            if not (isinstance(class_names, list) and all(isinstance(n, str) for n in class_names) and class_names):
                raise ValueError("class_names")
            if not (isinstance(category_ids, list) and all(isinstance(i, int) for i in category_ids)):
                raise ValueError("category_ids")
            return cls(
                class_names=class_names, arch=metadata["architecture"], min_size=int(metadata["min_size"]),
                max_size=int(metadata["max_size"]), score_threshold=float(metadata["score_threshold"]),
                nms_iou=float(metadata["nms_iou"]), detections_per_image=int(metadata["detections_per_image"]),
                category_ids=category_ids, run_id=metadata.get("run_id", ""),
                val_map=float(metadata["val_map"]) if metadata.get("val_map") else None)
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelLoadError(f"{source}: not an artdet ONNX model (metadata {exc} missing or invalid)") from None

    @classmethod
    def from_onnx(cls, path: str | Path, source: str | None = None) -> "ModelCard":
        """The card of an ONNX file, read with onnxruntime (which the serving install has)."""
        import onnxruntime as ort

        source = source or Path(path).name
        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelLoadError(f"{source}: cannot be loaded by onnxruntime ({exc})") from None
        return cls.from_metadata(session.get_modelmeta().custom_metadata_map, source)
