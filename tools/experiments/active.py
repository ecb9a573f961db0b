"""`artdet experiment active`: does choosing what to label save curators' labels?

The transfer experiment's photo-pretrained detector (the stand-in for COCO weights) is fine-tuned on a growing
labelled set of painting-look scenes: a random start of `start` images, then `rounds` rounds that each add
`add` images of an unlabelled pool, chosen at random, by uncertainty (SuggestImages without diversity) or by
uncertainty + diversity (SuggestImages' default), with the measures and ranking SuggestImages uses
(detector/suggest.py) on the round's exported model. Every round trains from the pretrained weights with the
product's default strategy and the same step budget; validation mAP after each round, over several seeds,
gives each strategy's learning curve.
"""

from __future__ import annotations

import importlib.util
import json
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artdet.detector.files import save_json
from artdet.tools.experiments.scenes import PAINTING_CLASSES, write_scenes
from artdet.tools.experiments.transfer import Settings as TransferSettings
from artdet.tools.experiments.transfer import _config, _drop_checkpoints, _epochs, pretrain

SELECTIONS = ("random", "uncertainty", "uncertainty-diversity")
LEARNING_RATE = 1e-3  # the transfer experiment's rate for two-stage (stage 2 at x 0.1)


@dataclass
class Settings:
    size: int = 192
    pool: int = 300
    val_images: int = 100
    start: int = 20
    add: int = 20
    rounds: int = 5
    steps: int = 150  # training budget per round
    batch: int = 4
    seeds: int = 3
    steps_per_epoch: int = 25
    pretrain_images: int = 600
    pretrain_steps: int = 1200

    @classmethod
    def tiny(cls) -> "Settings":
        return cls(size=128, pool=10, val_images=4, start=4, add=2, rounds=2, steps=4, batch=2, seeds=1,
                   steps_per_epoch=2, pretrain_images=8, pretrain_steps=4)

    def transfer(self) -> TransferSettings:
        return TransferSettings(size=self.size, pretrain_images=self.pretrain_images,
                                pretrain_steps=self.pretrain_steps, val_images=self.val_images, steps=self.steps,
                                batch=self.batch, steps_per_epoch=self.steps_per_epoch)


def make_data(root: Path, settings: Settings) -> dict[str, Path]:
    return {"a-train": write_scenes(root, "photo", settings.pretrain_images, settings.size, 0, name="a-train.json"),
            "a-val": write_scenes(root, "photo", settings.val_images, settings.size, 1, name="a-val.json"),
            "pool": write_scenes(root, "painting", settings.pool, settings.size, 7, classes=PAINTING_CLASSES,
                                 name="pool.json"),
            "val": write_scenes(root, "painting", settings.val_images, settings.size, 8, classes=PAINTING_CLASSES,
                                name="val.json")}


def _subset(pool: dict[str, Any], ids: list[int], out: Path) -> Path:
    keep = set(ids)
    save_json({**pool, "images": [i for i in pool["images"] if i["id"] in keep],
               "annotations": [a for a in pool["annotations"] if a["image_id"] in keep]}, out)
    return out


def _train_round(settings: Settings, labelled: Path, val: Path, pretrained: Path, seed: int, run: Path) -> dict:
    from artdet.detector.config import TrainConfig
    from artdet.detector.training import train

    images = len(json.loads(labelled.read_text())["images"])
    total = _epochs(settings.transfer(), settings.steps, images)
    defaults = TrainConfig()
    stage1 = max(1, round(total * defaults.stage1_epochs / (defaults.stage1_epochs + defaults.stage2_epochs)))
    config = _config(settings.transfer(), labelled, val, weights=str(pretrained), strategy="two-stage",
                     lr=LEARNING_RATE, seed=seed, stage1_epochs=stage1, stage2_epochs=max(0, total - stage1))
    summary = train(config, run, progress=False)
    return summary["final"]


def _select(strategy: str, run: Path, pool: dict[str, Any], root: Path, labelled: list[int], count: int,
            rng: random.Random) -> list[int]:
    """The next `count` pool images to label: at random, or as SuggestImages ranks them with the round's model."""
    unlabelled = [image["id"] for image in pool["images"] if image["id"] not in set(labelled)]
    if strategy == "random":
        return rng.sample(unlabelled, min(count, len(unlabelled)))
    import numpy as np

    from artdet.detector.export import export_onnx
    from artdet.detector.inference import Detector
    from artdet.detector.suggest import analyse, embed, rank

    onnx = run / "model.onnx"
    export_onnx(run, onnx, check=False)
    detector = Detector(onnx)
    by_id = {image["id"]: image for image in pool["images"]}
    analysed = {image_id: analyse(detector, str(root / by_id[image_id]["file_name"]), str(image_id))
                for image_id in unlabelled}
    seeds = None
    if strategy == "uncertainty-diversity":
        seeds = np.stack([embed(detector, str(root / by_id[i]["file_name"]), str(i)) for i in labelled])
    chosen, _ = rank(list(analysed.values()), count, strategy == "uncertainty-diversity", seeds)
    return [int(suggestion.image.file_name) for suggestion in chosen]


def run_seed(strategy: str, seed: int, settings: Settings, data: dict[str, Path], pretrained: Path,
             work: Path) -> list[dict[str, Any]]:
    """One learning curve: mAP after each round, and which images each round added."""
    pool = json.loads(data["pool"].read_text())
    start_rng = random.Random(f"start-{seed}")  # the same start for every strategy of a seed
    labelled = start_rng.sample([image["id"] for image in pool["images"]], settings.start)
    pick_rng = random.Random(f"{strategy}-{seed}")
    curve = []
    for round_index in range(settings.rounds + 1):
        started = time.time()
        run = work / strategy / f"seed{seed}" / f"round{round_index}"
        if run.exists():
            import shutil

            shutil.rmtree(run)
        run.mkdir(parents=True)
        # beside the pool's file, so its image names resolve
        labelled_file = _subset(pool, labelled, data["pool"].parent / f"labelled-{strategy}-{seed}-{round_index}.json")
        final = _train_round(settings, labelled_file, data["val"], pretrained, seed, run / "train")
        point = {"labels": len(labelled), "map": final["map"], "ap50": final["ap50"]}
        if round_index < settings.rounds:
            added = _select(strategy, run / "train", pool, data["pool"].parent, labelled, settings.add, pick_rng)
            point["added"] = added
            labelled = labelled + added
        _drop_checkpoints(run / "train")
        (run / "train" / "model.onnx").unlink(missing_ok=True)
        point["seconds"] = round(time.time() - started, 1)
        curve.append(point)
    return curve


def summarise(curves: dict[str, list[list[dict[str, Any]]]]) -> dict[str, Any]:
    """Mean ± std mAP per strategy and label count, and the labels each strategy needs to reach random's final
    mean mAP (linear between rounds; None when it never does)."""
    result: dict[str, Any] = {}
    for strategy, seeds in curves.items():
        labels = [point["labels"] for point in seeds[0]]
        maps = [[curve[i]["map"] for curve in seeds] for i in range(len(labels))]
        result[strategy] = {"labels": labels, "map_mean": [round(statistics.mean(m), 4) for m in maps],
                            "map_std": [round(statistics.stdev(m), 4) if len(m) > 1 else 0.0 for m in maps]}
    if "random" in result:
        target = result["random"]["map_mean"][-1]
        for summary in result.values():
            summary["labels_to_reach_random_final"] = _labels_to_reach(summary["labels"], summary["map_mean"],
                                                                       target)
            reached = summary["labels_to_reach_random_final"]
            summary["label_saving"] = None if reached is None else round(1 - reached / summary["labels"][-1], 3)
    return result


def _labels_to_reach(labels: list[int], maps: list[float], target: float) -> float | None:
    for i, value in enumerate(maps):
        if value >= target:
            if i == 0:
                return float(labels[0])
            low, high = maps[i - 1], value
            return round(labels[i - 1] + (labels[i] - labels[i - 1]) * (target - low) / (high - low), 1)
    return None


def markdown(summary: dict[str, Any]) -> str:
    labels = next(iter(summary.values()))["labels"]
    lines = ["| mAP by labelled images | " + " | ".join(str(n) for n in labels) +
             " | labels to reach random's final mAP | labels saved |",
             "|---" * (len(labels) + 3) + "|"]
    for strategy, s in summary.items():
        reached = s.get("labels_to_reach_random_final")
        saving = s.get("label_saving")
        lines.append(f"| {strategy} | " + " | ".join(f"{m:.3f} ± {d:.3f}" for m, d in zip(s["map_mean"], s["map_std"]))
                     + f" | {'not reached' if reached is None else f'{reached:g}'} | "
                     + f"{'—' if saving is None else f'{100 * saving:.0f}%'} |")
    return "\n".join(lines) + "\n"


def draw_chart(summary: dict[str, Any], settings: Settings, out: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), dpi=100, layout="constrained")
    axes = figure.subplots()
    for strategy, s in summary.items():
        low = [m - d for m, d in zip(s["map_mean"], s["map_std"])]
        high = [m + d for m, d in zip(s["map_mean"], s["map_std"])]
        axes.plot(s["labels"], s["map_mean"], marker="o", label=strategy)
        axes.fill_between(s["labels"], low, high, alpha=0.2)
    axes.set_xlabel("labelled images")
    axes.set_ylabel("validation mAP")
    axes.set_title(f"Active learning on the painting look (mean ± std over {settings.seeds} seeds)")
    axes.legend()
    figure.savefig(out)


def run_experiment(out: Path, settings: Settings, strategies: tuple[str, ...] = SELECTIONS,
                   pretrained: Path | None = None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    data = make_data(out / "data", settings)
    pretrained = pretrained or pretrain(out, data, settings.transfer())
    curves = {strategy: [run_seed(strategy, seed, settings, data, pretrained, out / "runs")
                         for seed in range(settings.seeds)] for strategy in strategies}
    summary = summarise(curves)
    report = {"settings": vars(settings), "learning_rate": LEARNING_RATE, "summary": summary, "curves": curves}
    save_json(report, out / "active.json")
    (out / "active.md").write_text(markdown(summary))
    draw_chart(summary, settings, out / "active.png")
    return report


def cmd_active(args) -> int:
    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError("the active-learning chart needs matplotlib: pip install 'artdet[train]'")
    settings = Settings.tiny() if args.tiny else Settings()
    if args.seeds:
        settings.seeds = args.seeds
    strategies = tuple(args.strategies.split(",")) if args.strategies else SELECTIONS
    unknown = set(strategies) - set(SELECTIONS)
    if unknown:
        raise ValueError(f"--strategies: unknown {sorted(unknown)}; choose from {list(SELECTIONS)}")
    report = run_experiment(Path(args.out), settings, strategies, Path(args.pretrained) if args.pretrained else None)
    print(markdown(report["summary"]), end="")
    return 0


def add_command(experiment) -> None:
    p = experiment.add_parser("active", help="active learning: random vs uncertainty vs uncertainty + diversity")
    p.add_argument("--out", required=True, help="folder for data, runs, active.json / .png / .md")
    p.add_argument("--tiny", action="store_true", help="a few images and steps: checks the plumbing only")
    p.add_argument("--seeds", type=int, help="seeds per strategy (default 3)")
    p.add_argument("--strategies", help=f"comma-separated subset of {','.join(SELECTIONS)}")
    p.add_argument("--pretrained", help="the photo-pretrained checkpoint (default: pretrain one in --out, cached; "
                                        "the transfer experiment's pretrain-*/checkpoints/best.pt is the same)")
    p.set_defaults(handler=cmd_active)
