"""Shared fixtures: a fabricated COCO checkpoint in a private TORCH_HOME, synthetic datasets, real data path."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PEOPLE_ART = ROOT.parent / "shared" / "data" / "people-art-mini"
TINY_ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"

needs_people_art = pytest.mark.skipif(not PEOPLE_ART.is_dir(), reason="../shared/data/people-art-mini is absent")


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory) -> Path:
    """TORCH_HOME whose hub cache holds a random-init state_dict under the COCO weights' file name,
    so `--weights coco` runs torchvision's real loading path offline."""
    import torch

    from artdet.detector.architectures import get_architecture

    home = tmp_path_factory.mktemp("torch_home")
    os.environ["TORCH_HOME"] = str(home)
    arch = get_architecture(TINY_ARCH)
    torch.manual_seed(0)
    model = arch.builder(weights=None, weights_backbone=None, num_classes=91)
    cache = home / "hub" / "checkpoints" / os.path.basename(arch.coco_weights.url)
    cache.parent.mkdir(parents=True)
    torch.save(model.state_dict(), cache)
    return home


@pytest.fixture(scope="session")
def shapes(tmp_path_factory) -> dict[str, Path]:
    """Small synthetic train / val sets: two classes, one shape per image."""
    from artdet.tools.experiments.synthetic import write_shapes_dataset

    root = tmp_path_factory.mktemp("shapes")
    return {
        "train": write_shapes_dataset(root, images=8, seed=1, name="train.json"),
        "val": write_shapes_dataset(root, images=4, seed=2, name="val.json"),
    }


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    """The condition's first truthy value, polled until the deadline (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def artdet(*args: str, env: dict | None = None, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the installed command line as a user would."""
    result = subprocess.run([sys.executable, "-m", "artdet.tools.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                            text=True, env={**os.environ, **(env or {})}, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"artdet {' '.join(map(str, args))} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def overfit_run(tmp_path_factory, torch_home) -> Path:
    """A model trained until it knows a tiny synthetic set (shared by the training, export and detect tests)."""
    from artdet.detector.config import TrainConfig
    from artdet.tools.experiments.synthetic import write_shapes_dataset
    from artdet.detector.training import train

    root = tmp_path_factory.mktemp("overfit")
    data = write_shapes_dataset(root, images=16, seed=3, size=(128, 96), name="train.json")
    config = TrainConfig(train=str(data), val=str(data), arch=TINY_ARCH, weights="none", strategy="full",
                         stage1_epochs=0, stage2_epochs=30, max_size=128, batch_size=4, workers=0,
                         optimizer="adamw", lr=1e-3, weight_decay=0.0, warmup_iters=10, seed=0)
    config.augment.enabled = False
    train(config, root / "run", progress=False)
    return root / "run"


@pytest.fixture(scope="session")
def overfit_export(overfit_run, tmp_path_factory) -> dict:
    """The overfit model exported to ONNX once per session: {"path", "result", "data"}."""
    from artdet.detector.dataset import load_coco
    from artdet.detector.export import export_onnx

    data = load_coco(overfit_run.parent / "train.json")
    out = tmp_path_factory.mktemp("export") / "shapes.onnx"
    return {"path": out, "result": export_onnx(overfit_run, out, data), "data": data}


TOKENS = {"admin": "admin-token", "annotator": "annotator-token", "operator": "operator-token",
          "client": "client-token"}


class ServerProcess:
    """`artdet serve` in a subprocess on a free loopback port, as an operator would run it."""

    def __init__(self, data_dir: Path, *extra: str, env: dict | None = None):
        self.data_dir = data_dir
        self.extra = [str(e) for e in extra]
        self.env = {**os.environ, "ARTDET_TOKENS": ";".join(f"{t}={r}" for r, t in TOKENS.items()),
                    **(env or {})}
        self.process: subprocess.Popen | None = None
        self.address = ""
        self.console_url = ""
        self.log = data_dir.parent / f"{data_dir.name}-server.log"

    def start(self, port: int = 0) -> "ServerProcess":
        import time

        console = [] if "--console-port" in self.extra or "--no-console" in self.extra else ["--console-port", "0"]
        args = [sys.executable, "-m", "artdet.tools.cli", "serve", "--data-dir", str(self.data_dir),
                "--port", str(port), *console, *self.extra]
        self.process = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                        stderr=self.log.open("ab"), text=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.process.stdout.readline()
            if line.startswith("artdet: web console on "):
                self.console_url = line.split()[-1]
            if line.startswith("artdet: ready on "):
                self.address = line.split()[-1]
                return self
            if self.process.poll() is not None:
                break
        raise AssertionError(f"server did not start:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        import signal

        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def connect(self, role: str = "admin"):
        from artdet.tools.client import connect

        return connect(self.address, TOKENS[role] if role else None)


def write_shapes_for_server(root: Path, images: int = 8, seed: int = 11) -> Path:
    from artdet.tools.experiments.synthetic import write_shapes_dataset

    return write_shapes_dataset(root, images=images, seed=seed, name="annotations.json")


TINY_JOB = ["--arch", TINY_ARCH, "--stage1-epochs", "1", "--stage2-epochs", "1", "--max-size", "128",
            "--max-iters-per-epoch", "2", "--batch-size", "2", "--workers", "0"]


def tiny_trainer(hooks, stages=None, **config):
    """A Trainer over two fixed one-image batches and an untrained tiny model with frozen BatchNorm (as a
    pretrained start has): the loop's behaviour in seconds, no data set or weights needed."""
    import torch
    from torch.utils.data import DataLoader

    from artdet.detector.architectures import get_architecture
    from artdet.detector.config import TrainConfig
    from artdet.detector.distributed import DistContext
    from artdet.detector.models import build_model, freeze_batchnorm
    from artdet.detector.strategy import Stage
    from artdet.detector.trainer import EventStorage, Trainer

    class Batches(list):
        batch_sampler = dataset = type("Epochs", (), {"set_epoch": lambda self, epoch: None})()

    torch.manual_seed(0)
    image = torch.rand(3, 64, 80)
    target = {"boxes": torch.tensor([[10.0, 10.0, 40.0, 50.0]]), "labels": torch.tensor([1])}
    loader: DataLoader = Batches([([image], [target])] * 2)  # type: ignore[assignment]
    model, _ = build_model(TINY_ARCH, ["thing"], "none", min_size=64, max_size=96)
    freeze_batchnorm(model)
    return Trainer(model, get_architecture(TINY_ARCH), TrainConfig(train="x", **{"warmup_iters": 0, **config}),
                   stages or [Stage("s", 2, 0, False, 0.01)], loader, DistContext(0, 1, 0, torch.device("cpu")),
                   hooks, EventStorage())
