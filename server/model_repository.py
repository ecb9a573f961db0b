"""The served models, read from the models directory alone (no database, no torch):
`<root>/<name>/<version>/model.onnx` + `model.json`, and `<root>/<name>/active.json`.

The full server and stateless Detect-only replicas share it; replicas pick up activations by
re-reading active.json.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from artdet.detector.errors import DataCorrupted, FailedPrecondition, InvalidArgument, NotFound
from artdet.detector.files import save_json
from artdet.detector.images import PixelBudget
from artdet.detector.inference import Detector
from artdet.detector.model_card import VARIANT_SUFFIXES
from artdet.server.names import check_name
from artdet.server.faults import fault_point


def read_active(root: Path, name: str) -> dict:
    path = root / name / "active.json"
    if not path.is_file():
        return {"version": 0, "history": []}
    try:
        state = json.loads(path.read_text())
        return {"version": int(state["version"]), "history": [int(v) for v in state["history"]]}
    except (ValueError, TypeError, KeyError) as exc:
        raise DataCorrupted(f"model {name!r}: its active.json is damaged ({type(exc).__name__})") from None


def write_active(root: Path, name: str, version: int, history: list[int]) -> None:
    save_json({"version": version, "history": history}, root / name / "active.json")


def variant_file(folder: Path, card: dict, variant: str, what: str) -> Path:
    """The file of a model version's `variant` ("" or "fp32": model.onnx); NotFound / FailedPrecondition naming
    the variant when it is unknown, was not built, or was refused."""
    if variant in ("", "fp32"):
        return folder / "model.onnx"
    if variant not in VARIANT_SUFFIXES:
        raise InvalidArgument(f"variant: {variant[:20]!r} is not one of fp32, {', '.join(VARIANT_SUFFIXES)}")
    built = {v.get("kind"): v for v in card.get("variants", []) if isinstance(v, dict)}
    if variant not in built:
        raise NotFound(f"variant: {what} has no {variant} variant (it was registered before variants were built)")
    if built[variant].get("refused"):
        raise FailedPrecondition(f"variant: {what}'s {variant} variant was not kept: {built[variant]['refused']}")
    return folder / f"model{VARIANT_SUFFIXES[variant]}"


@dataclass
class LoadedModel:
    name: str
    version: int
    detector: Detector
    descriptions: dict[str, str] = field(default_factory=dict)
    card: dict = field(default_factory=dict)
    open_variant: Callable[[Path], Detector] | None = None
    _variants: dict[str, Detector] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def detector_for(self, variant: str) -> Detector:
        """The fp32 detector, or a kept variant's, loaded on first use and unloaded with this version."""
        if variant in ("", "fp32"):
            return self.detector
        path = variant_file(self.detector.path.parent, self.card, variant, f"model {self.name} v{self.version}")
        with self._lock:
            if variant not in self._variants:
                self._variants[variant] = self.open_variant(path)
            return self._variants[variant]


class ModelRepository:
    """Loaded detectors by (name, version) and which version each name serves.

    Activation loads the new version before switching, so requests in flight keep the model they
    started with and every later request gets the new one; nothing fails in between. Each name keeps
    its active and its previous version loaded; other versions (asked for explicitly) stay in a small
    LRU and are unloaded when evicted, once the calls that still hold them finish.
    """

    def __init__(self, root: str | Path, intra_op_threads: int | None = None, inter_op_threads: int | None = None,
                 max_pixels: int | None = None, default_model: str = "", extra_versions: int = 2,
                 decode_budget_pixels: int = 16_000_000, concurrent_runs: int = 2):
        self.root = Path(root)
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.max_pixels = max_pixels
        self.default_model = default_model
        self.extra_versions = extra_versions
        self.concurrent_runs = concurrent_runs
        self.decode_budget = PixelBudget(decode_budget_pixels)  # shared by every model: one memory bound
        self._loaded: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._active: dict[str, int] = {}
        self._previous: dict[str, int] = {}
        self._lock = threading.Lock()
        self.refresh()

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []

    def refresh(self) -> None:
        """Re-read every active.json (replicas call this periodically); loads newly activated versions."""
        for name in self.names():
            try:
                state = read_active(self.root, name)
                if state["version"] and self._active.get(name) != state["version"]:
                    self._switch(name, state["version"], state["history"])
            except Exception:  # a half-copied replica directory: keep serving what we have
                continue

    def active_version(self, name: str) -> int:
        return self._active.get(name, 0)

    def loaded_versions(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._loaded)

    def _load(self, name: str, version: int, evict: bool = True) -> LoadedModel:
        """The loaded version; `evict=False` for one about to be pinned, which eviction must not drop first."""
        key = (name, version)
        with self._lock:
            loaded = self._loaded.get(key)
            if loaded is not None:
                self._loaded.move_to_end(key)
                return loaded
        folder = self.root / name / str(version)
        if not (folder / "model.onnx").is_file():
            raise NotFound(f"model {name!r} version {version} not found")
        kwargs = {"max_pixels": self.max_pixels} if self.max_pixels else {}

        def open_detector(path: Path, label: str = "") -> Detector:
            return Detector(path, self.intra_op_threads, self.inter_op_threads, decode_budget=self.decode_budget,
                            name=f"{name} v{version}{label}", concurrent_runs=self.concurrent_runs, **kwargs)

        detector = open_detector(folder / "model.onnx")
        try:
            card = json.loads((folder / "model.json").read_text()) if (folder / "model.json").is_file() else {}
            descriptions = dict(card.get("class_info", {}))
        except (ValueError, TypeError, AttributeError) as exc:
            raise DataCorrupted(f"model {name!r} version {version}: its model.json is damaged "
                                f"({type(exc).__name__})") from None
        loaded = LoadedModel(name, version, detector, descriptions, card,
                             lambda path: open_detector(path, f" ({path.name.split('.', 1)[1]})"))
        with self._lock:
            loaded = self._loaded.setdefault(key, loaded)
            if evict:
                self._evict()
        return loaded

    def _evict(self) -> None:
        """Drop least recently used versions that are neither active nor previous (lock held)."""
        pinned = {(n, v) for n, v in self._active.items()} | {(n, v) for n, v in self._previous.items()}
        unpinned = [key for key in self._loaded if key not in pinned]
        for key in unpinned[:max(0, len(unpinned) - self.extra_versions)]:
            del self._loaded[key]  # in-flight calls keep their reference; the session goes with the last one

    def _switch(self, name: str, version: int, history: list[int]) -> LoadedModel:
        loaded = self._load(name, version, evict=False)
        earlier = [v for v in history if v != version]
        with self._lock:
            self._active[name] = version  # readers see the old or the new version
            if earlier:
                self._previous[name] = earlier[-1]
            else:
                self._previous.pop(name, None)
            self._evict()
        return loaded

    def activate(self, name: str, version: int) -> None:
        state = read_active(self.root, name)
        history = [v for v in state["history"] if v != version] + [version]
        self._switch(name, version, history)
        write_active(self.root, name, version, history)
        fault_point("activated")

    def rollback(self, name: str) -> int:
        state = read_active(self.root, name)
        history = [v for v in state["history"] if (self.root / name / str(v)).is_dir()]
        if len(history) < 2:
            raise FailedPrecondition(f"model {name!r} has no previously active version to roll back to")
        previous = history[-2]
        self._switch(name, previous, history[:-1])
        write_active(self.root, name, previous, history[:-1])
        return previous

    def forget(self, name: str, version: int) -> None:
        if self.active_version(name) == version:
            raise FailedPrecondition(f"model {name!r} version {version} is active; activate another version first")
        with self._lock:
            self._loaded.pop((name, version), None)
        state = read_active(self.root, name)
        if version in state["history"]:
            write_active(self.root, name, state["version"], [v for v in state["history"] if v != version])

    def set_descriptions(self, name: str, version: int, descriptions: dict[str, str]) -> None:
        with self._lock:
            loaded = self._loaded.get((name, version))
            if loaded is not None:
                loaded.descriptions = dict(descriptions)

    def resolve(self, name: str = "", version: int = 0) -> LoadedModel:
        """The model a Detect call asks for: by name (default: the configured or only one) and version."""
        if name:
            check_name(name, "model_name")  # before any file system access: names never become paths
        else:
            name = self.default_model or self._only_active_name()
        if version:
            if not (self.root / name / str(version)).is_dir():
                raise NotFound(f"model_name/model_version: model {name!r} version {version} not found")
            return self._load(name, version)
        active = self._active.get(name)
        if not active:
            if not (self.root / name).is_dir():
                raise NotFound(f"model_name: model {name!r} not found")
            raise FailedPrecondition(f"model_name: model {name!r} has no active version; activate one first")
        with self._lock:
            loaded = self._loaded.get((name, active))
        return loaded or self._load(name, active)

    def _only_active_name(self) -> str:
        names = sorted(n for n, v in self._active.items() if v)
        if len(names) == 1:
            return names[0]
        if not names:
            raise FailedPrecondition("model_name: no model is active on this server")
        raise InvalidArgument(f"model_name: required, this server serves several models: {names}")
