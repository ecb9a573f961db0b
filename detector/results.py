"""What a detection call returns, as plain data: boxes in the upright image's pixels, scores, labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in upright image pixels
    score: float
    label_id: int  # 1..num_classes
    label: str

    def to_json(self) -> dict[str, Any]:
        return {"box": [round(v, 2) for v in self.box], "score": round(self.score, 4), "label": self.label}


@dataclass
class DetectionResult:
    width: int
    height: int
    detections: list[Detection] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"detections": [d.to_json() for d in self.detections], "width": self.width, "height": self.height}
