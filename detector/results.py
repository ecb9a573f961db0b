"""What a detection call returns, as plain data: boxes in the upright image's pixels, scores, labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in upright image pixels
    score: float
    label_id: int  # 1..num_classes
    label: str
    description: str = ""  # the curator's text for the class, where the server has one

    def to_json(self) -> dict[str, Any]:
        return {"box": [round(v, 2) for v in self.box], "score": round(self.score, 4), "label": self.label,
                "label_id": self.label_id, "description": self.description}

    def to_text(self) -> str:
        x1, y1, x2, y2 = self.box
        text = f"{self.label} {self.score:.2f} [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}]"
        return f"{text} {self.description}" if self.description else text


@dataclass
class DetectionResult:
    width: int
    height: int
    detections: list[Detection] = field(default_factory=list)
    model: str = ""  # the model's name (a local file's name)
    model_version: int = 0  # 0: a local file, not a registered version
    time_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"detections": [d.to_json() for d in self.detections], "width": self.width, "height": self.height,
                "model": self.model, "model_version": self.model_version,
                "time_ms": None if self.time_ms is None else round(self.time_ms, 1)}

    def to_text(self, threshold: float) -> list[str]:
        """A line per detection, or one saying there was none above `threshold`."""
        if not self.detections:
            return [f"no detections above {threshold:.2f} (use --threshold)"]
        return [d.to_text() for d in self.detections]
