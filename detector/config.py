"""The one typed training configuration; CLI flags, RPC fields and run directories map onto it.

Torch-free: the server validates a job's parameters with it before any worker starts. Each field declares
its range, choices and help beside its default (`option(...)`); `TRAIN_SCHEMA` reads them back, and
`TrainConfig.validate()` checks them all, for the command line, the RPC and config files alike. The
`artdet train` / `artdet jobs start` flags and their help are derived from the same declarations.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import MISSING, dataclass, field
from typing import Any, Callable

from artdet.detector.errors import InvalidArgument, show

STRATEGIES = ("auto", "head-only", "two-stage", "full")
NAMED_WEIGHTS = ("coco", "none")  # besides a weights file: torchvision's COCO weights, or a random start
# serving and export defaults, one definition each: the RPC, the CLI, the Detector and the export read them here
SCORE_THRESHOLD = 0.5  # lowest score Detect returns unless the caller asks for another
EXPORT_SCORE_THRESHOLD = 0.05  # lowest score evaluation and the exported graph keep
MAX_VARIANT_AP50_DROP = 0.01  # a smaller model variant losing more AP50 than this against fp32 is not kept
DETECTIONS_PER_IMAGE = 100
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step")
# torch-free facts about detector.architectures.ARCHITECTURES (a test keeps the two equal):
# name -> backbone stages, torchvision's range for trainable_backbone_layers (detector.freezing splits them)
ARCH_BACKBONE_STAGES: dict[str, int] = {
    "fasterrcnn_resnet50_fpn": 5,
    "fasterrcnn_resnet50_fpn_v2": 5,
    "fasterrcnn_mobilenet_v3_large_fpn": 6,
    "fasterrcnn_mobilenet_v3_large_320_fpn": 6,
}
ARCH_NAMES: tuple[str, ...] = tuple(ARCH_BACKBONE_STAGES)


def option(default: Any = MISSING, *, help: str, ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None, choices: tuple[str, ...] | None = None,
           pattern: str | None = None, max_length: int | None = None, max_items: int | None = None,
           server_owned: bool = False, default_factory: Callable[[], Any] | Any = MISSING) -> Any:
    """A dataclass field with its schema: range (ge/gt, le/lt), choices, help, and whether only the server sets it."""
    metadata = {"schema": dict(help=help, ge=ge, gt=gt, le=le, lt=lt, choices=choices, pattern=pattern,
                               max_length=max_length, max_items=max_items, server_owned=server_owned)}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


@dataclass(frozen=True)
class FieldSpec:
    """One configuration field as the schema declares it."""

    name: str
    kind: str  # int | float | bool | str | floats (a tuple of floats) | section (a nested config)
    optional: bool  # None is allowed (it means: the architecture's or torchvision's default)
    default: Any
    help: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    max_length: int | None = None
    max_items: int | None = None
    server_owned: bool = False

    @property
    def low(self) -> float | None:
        return self.ge if self.ge is not None else self.gt

    @property
    def high(self) -> float | None:
        return self.le if self.le is not None else self.lt

    def interval(self) -> str:
        if self.low is None and self.high is None:
            return ""
        low = "-inf" if self.low is None else _number(self.low)
        high = "inf" if self.high is None else _number(self.high)
        return f"{'[' if self.gt is None else '('}{low}, {high}{']' if self.lt is None else ')'}"

    def _in_range(self, value: float) -> bool:
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def _number_problem(self, value: Any, kind: str) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int if kind == "int" else (int, float)):
            return f"{show(value)} is not {'an int' if kind == 'int' else 'a float'}"
        if not math.isfinite(value):
            return f"{show(value)} is not a finite number in {self.interval()}"
        if not self._in_range(value):
            return f"{show(value)} is not in {self.interval()}"
        return None

    def problems(self, value: Any) -> list[tuple[str, str]]:
        """(suffix to the field's name, what is wrong) for each problem of `value`."""
        if value is None:
            return [] if self.optional else [("", "a value is required")]
        if self.kind in ("int", "float"):
            problem = self._number_problem(value, self.kind)
            return [("", problem)] if problem else []
        if self.kind == "bool":
            return [] if isinstance(value, bool) else [("", f"{show(value)} is not a bool")]
        if self.kind == "floats":
            if not isinstance(value, (tuple, list)):
                return [("", f"{show(value)} is not a list of floats")]
            if self.max_items is not None and len(value) > self.max_items:
                return [("", f"{len(value)} values; at most {self.max_items}")]
            found = []
            for index, item in enumerate(value):
                problem = self._number_problem(item, "float")
                if problem:
                    found.append((f"[{index}]", problem))
            return found
        if self.kind == "str":
            if not isinstance(value, str):
                return [("", f"{show(value)} is not a string")]
            if self.choices is not None and value not in self.choices:
                return [("", f"unknown {show(value)}; choose from {list(self.choices)}")]
            if self.max_length is not None and len(value) > self.max_length:
                return [("", f"{len(value)} characters; at most {self.max_length}")]
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                return [("", f"{show(value)} is not one of: {self.help}")]
        return []

    def parse(self, text: str) -> Any:
        """A value of this field from its text form (the RPC's `extra`).

        ValueError saying what the text is not, for garbage and for non-finite numbers.
        """
        if self.kind == "bool":
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError("is not a valid bool (true, false, 1 or 0)")
            return text.lower() in ("true", "1")
        if self.kind == "int":
            try:
                return int(text)
            except ValueError:
                raise ValueError("is not a valid int") from None
        if self.kind in ("float", "floats"):
            what = "float" if self.kind == "float" else "comma-separated list of floats"
            try:
                values = tuple(float(v) for v in text.split(","))
            except ValueError:
                raise ValueError(f"is not a valid {what}") from None
            if self.kind == "float" and len(values) != 1:
                raise ValueError(f"is not a valid {what}")
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"is not a finite number ({what})")
            return values if self.kind == "floats" else values[0]
        if self.kind == "str":
            return text
        raise ValueError("cannot be given as text")

    def describe(self) -> str:
        """Help text with the range, and the default, as `--help` shows it."""
        parts = [self.help]
        notes = []
        if self.interval():
            notes.append(f"{'each ' if self.kind == 'floats' else ''}in {self.interval()}")
        if self.default not in (None, "") and self.kind != "section":
            shown = ", ".join(map(str, self.default)) if isinstance(self.default, tuple) else str(self.default)
            notes.append(f"default: {shown}")
        if notes:
            parts.append(f"({'; '.join(notes)})")
        return " ".join(parts).replace("%", "%%")


def _kind(annotation: str) -> tuple[str, bool]:
    parts = [p.strip() for p in str(annotation).split("|")]
    optional = "None" in parts
    base = next(p for p in parts if p != "None")
    if base.startswith("tuple"):
        return "floats", optional
    return (base if base in ("int", "float", "bool", "str") else "section"), optional


def schema(cls: type) -> dict[str, FieldSpec]:
    """The FieldSpec of each field of a config dataclass, in declaration order."""
    specs = {}
    for f in dataclasses.fields(cls):
        kind, optional = _kind(f.type)
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        declared = f.metadata.get("schema")
        if declared is None:
            raise TypeError(f"{cls.__name__}.{f.name} declares no schema (use option(...))")
        specs[f.name] = FieldSpec(f.name, kind, optional, default, **declared)
    return specs


def _probability(default: float, what: str) -> Any:
    return option(default, ge=0, le=1, help=f"probability of {what} (augmentation)")


@dataclass
class AugmentConfig:
    enabled: bool = option(True, help="training augmentation")
    hflip: float = _probability(0.5, "a horizontal flip")
    scale_crop: float = _probability(0.5, "a box-safe random crop followed by rescale")
    color_jitter: float = _probability(0.5, "colour jitter")
    grayscale: float = _probability(0.1, "grayscale")
    blur: float = _probability(0.1, "blur")
    jpeg: float = _probability(0.2, "JPEG compression")
    posterize: float = _probability(0.1, "posterize")
    clahe: float = _probability(0.1, "CLAHE")


_PATH = 4096  # longest path or file name the configuration takes


@dataclass
class TrainConfig:
    # data
    train: str = option("", max_length=_PATH, server_owned=True,
                        help="COCO JSON (or Pascal VOC folder) of training annotations")
    val: str | None = option(None, max_length=_PATH, server_owned=True,
                             help="validation annotations; default: a seeded split of --train")
    images: str | None = option(None, max_length=_PATH, server_owned=True,
                                help="image root; default: each annotation file's folder")
    val_fraction: float = option(0.2, gt=0, lt=1, help="share of --train held out for validation when --val is absent")
    max_size: int | None = option(None, ge=64, le=4096,
                                  help="longest image side fed to the network (pixels); default: the architecture's")
    # model
    arch: str = option("fasterrcnn_mobilenet_v3_large_320_fpn", choices=ARCH_NAMES, help="detector architecture")
    weights: str = option("coco", max_length=_PATH, server_owned=True,
                          help="coco (torchvision's COCO weights via TORCH_HOME), none, or a weights/checkpoint file")
    # strategy and stages
    strategy: str = option("two-stage", choices=STRATEGIES, help="which layers train in which stage")
    stage1_epochs: int = option(1, ge=0, le=10_000,
                                help="epochs of stage 1 (heads only; a short stage 1 measured best, README Transfer)")
    stage2_epochs: int = option(8, ge=0, le=10_000, help="epochs of stage 2 (fine-tuning)")
    trainable_backbone_layers: int | None = option(
        None, ge=0, le=max(ARCH_BACKBONE_STAGES.values()),
        help="backbone stages unfrozen in stage 2, counted from the top (at most the architecture's stage count: "
             "5 for resnet, 6 for mobilenet); default: all of them (stage 2 trains the whole network)")
    stage1_train_rpn: bool = option(True, help="train the region proposal network in stage 1")
    stage1_train_box_head: bool = option(True, help="train the box head in stage 1")
    auto_size_threshold: int = option(500, ge=0, le=1_000_000_000,
                                      help="strategy auto: train images at or above which the dataset counts as large")
    auto_similarity_threshold: float = option(
        0.8, ge=0, le=1, help="strategy auto: the data counts as similar to the pretraining photos when each measure "
                              "(zero-shot AP50 on known classes, when there are any; the BatchNorm-shift measure) "
                              "is at or above this")
    # optimisation
    optimizer: str = option("sgd", choices=OPTIMIZERS, help="optimiser")
    lr: float = option(0.01, gt=0, le=10,
                       help="learning rate of stage 1 (and head-only); SGD for batch 4; AdamW users pick ~1e-4")
    stage2_lr_factor: float = option(0.1, gt=0, le=10, help="stage 2 learning rate = lr * factor")
    layer_decay: float = option(1.0, gt=0, le=1,
                                help="layer-wise learning-rate decay toward the input: backbone stage k from the top "
                                     "(1 = the top stage) trains at the stage's lr × decay^k (1: off)")
    ema_decay: float = option(0.0, ge=0, lt=1,
                              help="exponential moving average of the weights, which evaluation, best.pt and the "
                                   "export use; e.g. 0.999 (0: off)")
    momentum: float = option(0.9, ge=0, le=1, help="SGD momentum")
    weight_decay: float = option(1e-4, ge=0, le=1, help="weight decay")
    warmup_iters: int = option(50, ge=0, le=1_000_000, help="iterations of linear learning-rate warm-up per stage")
    schedule: str = option("cosine", choices=SCHEDULES, help="learning-rate schedule within a stage")
    step_milestones: tuple[float, ...] = option((0.67, 0.89), ge=0, le=1, max_items=32,
                                               help="fractions of a stage where `step` divides the rate by 10")
    grad_clip: float = option(10.0, ge=0, le=10_000, help="gradient norm clipping (0: off)")
    batch_size: int = option(4, ge=1, le=256, help="images per batch (per process)")
    workers: int = option(2, ge=0, le=64, help="data-loading worker processes")
    aspect_ratio_grouping: bool = option(True, help="batch images of similar aspect ratio together")
    amp: bool = option(True, help="mixed precision (used only on CUDA)")
    device: str = option("auto", pattern=r"[a-z]+(:\d{1,3})?", server_owned=True,
                         help="auto, cpu, cuda or cuda:N")
    seed: int = option(0, ge=0, le=2**32 - 1, help="random seed (data split, sampling, initialisation)")
    patience: int = option(0, ge=0, le=10_000,
                           help="epochs without val mAP gain before a stage ends (0: off)")
    max_iters_per_epoch: int | None = option(None, ge=0, le=10_000_000,
                                             help="cap on iterations per epoch, for quick runs and tests (0: none)")
    augment: AugmentConfig = option(default_factory=AugmentConfig, server_owned=True,
                                    help="training augmentation (on/off and each probability)")
    # evaluation / export
    eval_score_threshold: float = option(EXPORT_SCORE_THRESHOLD, ge=0, le=1,
                                         help="lowest score kept when evaluating and exporting")
    detections_per_image: int = option(DETECTIONS_PER_IMAGE, ge=1, le=10_000, help="most detections per image")
    # detection-model internals, exposed because they trade speed for recall on small CPUs
    rpn_pre_nms_top_n_train: int | None = option(None, ge=1, le=100_000,
                                                 help="RPN proposals before NMS in training; default: torchvision's")
    rpn_post_nms_top_n_train: int | None = option(None, ge=1, le=100_000,
                                                  help="RPN proposals after NMS in training; default: torchvision's")
    box_batch_size_per_image: int | None = option(None, ge=1, le=10_000,
                                                  help="RoI samples per image for the box head; default: torchvision's")

    def validate(self, label: Callable[[str], str] | None = None) -> None:
        """Check every field against the schema; InvalidArgument naming each field at fault.

        `label` turns a field's name into the name the caller knows it by (the RPC's `parameters.lr`).
        """
        name_of = label or (lambda name: name)
        errors = [f"{name_of(name)}{suffix}: {problem}"
                  for name, spec in TRAIN_SCHEMA.items() if spec.kind != "section"
                  for suffix, problem in spec.problems(getattr(self, name))]
        if not isinstance(self.augment, AugmentConfig):
            errors.append(f"{name_of('augment')}: {show(self.augment)} is not an augmentation section")
        else:
            errors += [f"{name_of('augment')}.{name}{suffix}: {problem}" for name, spec in AUGMENT_SCHEMA.items()
                       for suffix, problem in spec.problems(getattr(self.augment, name))]
        broken = {e.split(":")[0] for e in errors}
        layers, stages = self.trainable_backbone_layers, ARCH_BACKBONE_STAGES.get(self.arch)
        if stages is not None and isinstance(layers, int) and name_of("trainable_backbone_layers") not in broken \
                and layers > stages:
            errors.append(f"{name_of('trainable_backbone_layers')}: {layers} is not in [0, {stages}] for "
                          f"{self.arch} ({stages} backbone stages)")
        epochs = (name_of("stage1_epochs"), name_of("stage2_epochs"))
        if not broken & set(epochs) and self.stage1_epochs + self.stage2_epochs == 0:
            errors.append(f"{epochs[0]} + {epochs[1]}: at least one epoch is needed")
        if name_of("train") not in broken and not self.train:
            errors.append(f"{name_of('train')}: an annotation file is required")
        if errors:
            raise InvalidArgument("invalid training configuration: " + "; ".join(errors))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """From a config file (config.json, job.json); values are checked by validate(), keys here."""
        if not isinstance(data, dict):
            raise InvalidArgument(f"training configuration: {show(data)} is not an object")
        unknown = sorted(set(data) - set(TRAIN_SCHEMA))
        if unknown:
            raise InvalidArgument(f"unknown training configuration keys: {', '.join(show(k) for k in unknown[:20])}")
        values = dict(data)
        augment = values.get("augment")
        if augment is not None and not isinstance(augment, AugmentConfig):
            if not isinstance(augment, dict):
                raise InvalidArgument(f"augment: {show(augment)} is not an object")
            unknown = sorted(set(augment) - set(AUGMENT_SCHEMA))
            if unknown:
                raise InvalidArgument(f"augment: unknown keys {', '.join(show(k) for k in unknown[:20])}")
            values["augment"] = AugmentConfig(**augment)
        if isinstance(values.get("step_milestones"), list):
            values["step_milestones"] = tuple(values["step_milestones"])
        return cls(**values)


TRAIN_SCHEMA: dict[str, FieldSpec] = schema(TrainConfig)
AUGMENT_SCHEMA: dict[str, FieldSpec] = schema(AugmentConfig)
