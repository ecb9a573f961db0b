"""`artdet experiment transfer`: does our fine-tuning beat the alternatives, and does `auto` choose well?

A detector pretrained on photo-like scenes (domain A, the stand-in for COCO weights) is fine-tuned on
painting-like scenes (B) with every strategy, through the same `train()` users run with `--weights PATH`,
at the same step budget, over several seeds, in four cells auto was calibrated on (small/large B ×
B-similar/B-painting) and five held out from it (a middle size, an engraving look, both; and a fresco look in
two sizes, added after the engraving cells led to a change in `auto`'s similarity rule, to judge that rule).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artdet.detector.config import TrainConfig
from artdet.detector.files import save_json
from artdet.tools.experiments.scenes import PAINTING_CLASSES, PHOTO_CLASSES, write_scenes

ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"
# Forms of frozen-then-fine-tune: stage 1 takes a `share` of the budget (by default the share TrainConfig's
# default epochs give it); the rest are TrainConfig values. "two-stage" is the product's default form;
# "-third" the stage-1 length before issue 12, "-top3" the form before (stage 2 on the top 3 of 6 stages).
TWO_STAGE_FORMS: dict[str, dict[str, Any]] = {
    "two-stage": {},
    "two-stage-third": {"share": 3},
    "two-stage-sixth": {"share": 6},
    "two-stage-top3": {"share": 3, "trainable_backbone_layers": 3},
    "two-stage-decay": {"share": 3, "layer_decay": 0.7},
    "two-stage-ema": {"share": 3, "ema_decay": 0.99},
}
VARIANTS = ("zero-shot", "head-only", *TWO_STAGE_FORMS, "full", "auto", "scratch")
# Learning rates fixed in advance (AdamW): new heads at 1e-3; whole-network updates at 1e-4 (two-stage's
# stage 2: 1e-3 × stage2_lr_factor 0.1).
LEARNING_RATES = {"head-only": 1e-3, "two-stage": 1e-3, "full": 1e-4, "auto": 1e-3, "scratch": 1e-3}
CELLS = ("small-similar", "small-painting", "large-similar", "large-painting")  # auto was calibrated on these
# a size and a look auto's calibration never saw, with data from seeds of their own
HELD_OUT_CELLS = ("middle-painting", "small-engraving", "middle-engraving", "small-fresco", "middle-fresco")
ALL_CELLS = CELLS + HELD_OUT_CELLS
# look -> scene domain
LOOKS = {"similar": "photo-mild", "painting": "painting", "engraving": "engraving", "fresco": "fresco"}


@dataclass
class Settings:
    size: int = 192
    pretrain_images: int = 600
    pretrain_steps: int = 1200
    small: int = 100
    middle: int = 400
    large: int = 2000
    val_images: int = 100
    steps: int = 300  # fine-tuning budget per variant
    batch: int = 4
    seeds: int = 3
    steps_per_epoch: int = 25

    @classmethod
    def tiny(cls) -> "Settings":
        return cls(size=128, pretrain_images=8, pretrain_steps=4, small=4, middle=6, large=8, val_images=4, steps=4,
                   batch=2, seeds=2, steps_per_epoch=2)


def _config(settings: Settings, train: Path, val: Path, **values: Any) -> TrainConfig:
    return TrainConfig(train=str(train), val=str(val), arch=ARCH, max_size=settings.size,
                       batch_size=settings.batch, optimizer="adamw", weight_decay=1e-4, workers=1,
                       warmup_iters=min(20, settings.steps // 5), rpn_pre_nms_top_n_train=1000,
                       rpn_post_nms_top_n_train=500, box_batch_size_per_image=128,
                       max_iters_per_epoch=settings.steps_per_epoch, **values)


def _epochs(settings: Settings, steps: int, images: int) -> int:
    per_epoch = min(settings.steps_per_epoch, math.ceil(images / settings.batch))
    return max(1, round(steps / per_epoch))


def make_data(root: Path, settings: Settings, cells: tuple[str, ...] = CELLS) -> dict[str, Path]:
    """Domain A's sets, and each cell's training set and its look's validation set (the calibrated looks'
    always, for the similarity measures)."""
    data = {"a-train": write_scenes(root, "photo", settings.pretrain_images, settings.size, 0, name="a-train.json"),
            "a-val": write_scenes(root, "photo", settings.val_images, settings.size, 1, name="a-val.json")}
    looks = dict.fromkeys(["similar", "painting", *(cell.split("-")[1] for cell in cells)])
    for look in looks:
        data[f"{look}-val"] = write_scenes(root, LOOKS[look], settings.val_images, settings.size, 2,
                                           classes=PAINTING_CLASSES, name=f"{look}-val.json")
    for cell in cells:
        size_name, look = cell.split("-")
        data[cell] = write_scenes(root, LOOKS[look], getattr(settings, size_name), settings.size,
                                  5 if cell in HELD_OUT_CELLS else 3, classes=PAINTING_CLASSES, name=f"{cell}.json")
        if cell in HELD_OUT_CELLS:  # judged on images of its own, never on the calibration's
            data[f"{cell}-val"] = write_scenes(root, LOOKS[look], settings.val_images, settings.size, 6,
                                               classes=PAINTING_CLASSES, name=f"{cell}-val.json")
    return data


def pretrain(root: Path, data: dict[str, Path], settings: Settings) -> Path:
    """Domain-A detector from random init: the stand-in for COCO weights; cached per settings."""
    from artdet.detector.training import train

    run = root / f"pretrain-{settings.size}-{settings.pretrain_images}-{settings.pretrain_steps}"
    best = run / "checkpoints" / "best.pt"
    if best.is_file() and (run / "metrics.json").is_file():
        return best
    epochs = _epochs(settings, settings.pretrain_steps, settings.pretrain_images)
    config = _config(settings, data["a-train"], data["a-val"], weights="none", strategy="full", lr=1e-3,
                     stage1_epochs=0, stage2_epochs=epochs)
    train(config, run, progress=False)
    return best


def _shared_classes_map(per_class_ap: dict[str, float | None]) -> float:
    values = [per_class_ap.get(c) for c in PHOTO_CLASSES]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else 0.0


def _pretrained_model(pretrained: Path, val_file: Path, settings: Settings, seed: int):
    import torch

    from artdet.detector.dataset import load_coco
    from artdet.detector.models import build_model

    torch.manual_seed(seed)  # the star row of the predictor is new and random
    val = load_coco(val_file)
    model, _ = build_model(ARCH, val.class_names, str(pretrained), min_size=settings.size, max_size=settings.size)
    return model, val


def _zero_shot(pretrained: Path, val_file: Path, settings: Settings, seed: int) -> dict[str, Any]:
    import torch

    from artdet.detector.evaluate import evaluate_model

    model, val = _pretrained_model(pretrained, val_file, settings, seed)
    return evaluate_model(model, val, torch.device("cpu"), settings.size)


def measure_similarity(pretrained: Path, data: dict[str, Path], settings: Settings) -> dict[str, Any]:
    """Both measures `auto` uses, from the domain-A detector, on A's and each B look's validation images."""
    import torch

    from artdet.detector.evaluate import evaluate_model
    from artdet.detector.similarity import batchnorm_shift_similarity, zero_shot_similarity
    from artdet.detector.torch_data import TorchDetectionDataset

    measured = {}
    looks = [("A", "a-val")] + [(look, f"{look}-val") for look in LOOKS if f"{look}-val" in data]
    for look, key in looks:
        model, val = _pretrained_model(pretrained, data[key], settings, 0)
        metrics = evaluate_model(model, val, torch.device("cpu"), settings.size)
        measured[look] = {
            "zero_shot_ap50_shared_classes": round(zero_shot_similarity(metrics, {c: c for c in PHOTO_CLASSES}), 4),
            "batchnorm_shift": round(batchnorm_shift_similarity(model, TorchDetectionDataset(val),
                                                                torch.device("cpu")), 4)}
    return measured


def _stage1_epochs(total: int, share: int | None) -> int:
    if share is None:  # the product's default split
        defaults = TrainConfig()
        return max(1, round(total * defaults.stage1_epochs / (defaults.stage1_epochs + defaults.stage2_epochs)))
    return max(1, total // share)


def variant_config(variant: str, cell: str, seed: int, pretrained: Path, data: dict[str, Path],
                   settings: Settings) -> TrainConfig:
    size_name, look = cell.split("-")
    train_file, val_file = data[cell], data.get(f"{cell}-val", data[f"{look}-val"])
    total = _epochs(settings, settings.steps, getattr(settings, size_name))
    form = dict(TWO_STAGE_FORMS.get(variant, {}))
    strategy = "two-stage" if variant in TWO_STAGE_FORMS else variant
    values: dict[str, Any] = dict(lr=LEARNING_RATES[strategy], seed=seed)
    if variant == "scratch":
        values.update(weights="none", strategy="full", stage1_epochs=0, stage2_epochs=total)
    else:
        stage1 = _stage1_epochs(total, form.pop("share", None))
        values.update(weights=str(pretrained), strategy=strategy, stage1_epochs=stage1,
                      stage2_epochs=total - stage1, **form)
    return _config(settings, train_file, val_file, **values)


def _same_training(decision, variant: str, cell: str, seed: int, pretrained: Path, data: dict[str, Path],
                   settings: Settings) -> bool:
    """Whether `variant` trains exactly as `auto` decided: the same stages, and otherwise the same config (the
    learning rate reaches training only through the stages; 1e-3 × 0.1 and 1e-4 differ in the last bit only, and
    the calibration's auto and full runs gave the same mAP to the last digit on every seed)."""
    from artdet.detector.architectures import get_architecture
    from artdet.detector.strategy import manual_decision

    config = variant_config(variant, cell, seed, pretrained, data, settings)
    planned = manual_decision(config, get_architecture(ARCH)).stages
    return len(planned) == len(decision.stages) and all(
        dataclasses.replace(a, lr=0.0) == dataclasses.replace(b, lr=0.0) and math.isclose(a.lr, b.lr, rel_tol=1e-9)
        for a, b in zip(planned, decision.stages))


def _auto(cell: str, seed: int, pretrained: Path, data: dict[str, Path], settings: Settings, run: Path,
          measured: dict[str, Any]) -> dict[str, Any] | None:
    """auto's decision, and the run of a measured variant that trains exactly as it decided (deterministic on
    the CPU: the same config and seed give the same weights), or None when none does."""
    import shutil

    from artdet.detector.training import plan_strategy

    decision = plan_strategy(variant_config("auto", cell, seed, pretrained, data, settings), run)
    shutil.rmtree(run)
    choice = {"auto_choice": decision.strategy, "auto_reasons": decision.reasons,
              "auto_stages": [(s.name, s.epochs, s.backbone_layers) for s in decision.stages]}
    for variant, result in measured.items():
        runs = result["runs"]
        if variant in ("auto", "zero-shot", "scratch") or seed >= len(runs):
            continue
        if _same_training(decision, variant, cell, seed, pretrained, data, settings):
            return {**runs[seed], **choice, "same_training_as": variant}
    return None


def run_variant(variant: str, cell: str, seed: int, pretrained: Path, data: dict[str, Path], settings: Settings,
                work: Path, measured: dict[str, Any] | None = None) -> dict[str, Any]:
    from artdet.detector.training import train

    look = cell.split("-")[1]
    run = work / cell / variant / f"seed{seed}"
    if run.exists():  # a fresh run each time: the experiment is re-runnable
        import shutil

        shutil.rmtree(run)
    started = time.time()
    if variant == "zero-shot":  # the pretrained model as it is, on B's shared classes
        metrics = _zero_shot(pretrained, data.get(f"{cell}-val", data[f"{look}-val"]), settings, seed)
        result = {"map": _shared_classes_map(metrics["per_class_ap"]), "ap50": metrics["ap50"],
                  "per_class_ap": metrics["per_class_ap"],
                  "note": "mAP over the classes shared with domain A"}
    else:
        if variant == "auto":
            reused = _auto(cell, seed, pretrained, data, settings, run, measured or {})
            if reused is not None:
                return reused
        summary = train(variant_config(variant, cell, seed, pretrained, data, settings), run, progress=False)
        _drop_checkpoints(run)
        final = summary["final"]
        result = {"map": final["map"], "ap50": final["ap50"], "per_class_ap": final["per_class_ap"],
                  "detections": final["detections"]}
        if final["detections"] == 0:
            result["failure"] = "no detections above the score threshold"
        if variant == "auto":
            result["auto_choice"] = summary["strategy"]["strategy"]
            result["auto_reasons"] = summary["strategy"]["reasons"]
            result["auto_stages"] = [(s["name"], s["epochs"], s["backbone_layers"])
                                     for s in summary["strategy"]["stages"]]
    result["seconds"] = round(time.time() - started, 1)
    return result


def _drop_checkpoints(run: Path) -> None:
    """A measured run keeps its metrics and events, not its weights: hundreds of runs would fill the disk."""
    import shutil

    shutil.rmtree(run / "checkpoints", ignore_errors=True)


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    maps, ap50s = [r["map"] for r in runs], [r["ap50"] for r in runs]
    spread = statistics.stdev(maps) if len(maps) > 1 else 0.0
    classes = sorted({c for r in runs for c in r["per_class_ap"]})
    per_class = {c: round(statistics.mean([r["per_class_ap"].get(c) or 0.0 for r in runs]), 4) for c in classes}
    return {"map_mean": round(statistics.mean(maps), 4), "map_std": round(spread, 4),
            "ap50_mean": round(statistics.mean(ap50s), 4),
            "ap50_std": round(statistics.stdev(ap50s) if len(ap50s) > 1 else 0.0, 4),
            "per_class_ap_mean": per_class, "seconds_mean": round(statistics.mean(r["seconds"] for r in runs), 1),
            "failures": [r["failure"] for r in runs if "failure" in r], "runs": runs}


def _cell_summary(variants: dict[str, Any]) -> dict[str, Any]:
    trained = {k: v for k, v in variants.items() if k != "zero-shot"}
    if not trained:
        return {"variants": variants}
    best = max(trained, key=lambda k: trained[k]["map_mean"])
    summary: dict[str, Any] = {"variants": variants, "best": best}
    if "scratch" in variants:
        summary["pretrained_over_scratch"] = round(
            trained[best]["map_mean"] / max(variants["scratch"]["map_mean"], 1e-6), 1)
    if "auto" in variants:
        auto, top = variants["auto"], trained[best]
        summary["auto_choice"] = sorted({r["auto_choice"] for r in auto["runs"]})
        summary["auto_reasons"] = auto["runs"][0]["auto_reasons"]
        summary["auto_within_one_spread_of_best"] = (
            auto["map_mean"] >= top["map_mean"] - max(top["map_std"], auto["map_std"]))
    return summary


def _previous_report(path: Path, settings: Settings) -> dict[str, Any]:
    """Cells measured by an earlier invocation with the same settings are kept; other settings start afresh."""
    if path.is_file():
        report = json.loads(path.read_text())
        if report.get("settings") == vars(settings) and report.get("learning_rates") == LEARNING_RATES:
            return report
    return {"cells": {}}


def run_experiment(out: Path, settings: Settings, cells: tuple[str, ...] = CELLS,
                   variants: tuple[str, ...] = VARIANTS) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    data = make_data(out / "data", settings, cells)
    pretrained = pretrain(out, data, settings)
    pretrain_run = json.loads((pretrained.parent.parent / "metrics.json").read_text())
    pretrain_metrics = pretrain_run["final"]
    previous = _previous_report(out / "transfer.json", settings)
    report: dict[str, Any] = {"settings": vars(settings), "learning_rates": LEARNING_RATES,
                              "pretrain": {"map": pretrain_metrics["map"], "ap50": pretrain_metrics["ap50"],
                                           "seconds": pretrain_run["timing"]["seconds"]},
                              # looks measured by an earlier invocation stay; this one's are measured again
                              "similarity": {**previous.get("similarity", {}),
                                             **measure_similarity(pretrained, data, settings)},
                              "cells": previous["cells"]}
    for cell in cells:
        measured = dict(report["cells"].get(cell, {}).get("variants", {}))
        for variant in sorted(variants, key=lambda v: v == "auto"):  # auto may reuse a run measured here
            runs = [run_variant(variant, cell, seed, pretrained, data, settings, out / "runs", measured)
                    for seed in range(settings.seeds)]
            measured[variant] = _aggregate(runs)
            report["cells"][cell] = _cell_summary({v: measured[v] for v in VARIANTS if v in measured})
            save_json(report, out / "transfer.json")
    draw_chart(report, out / "transfer.png")
    (out / "transfer.md").write_text(markdown_table(report))
    return report


def _table(report: dict[str, Any], title: str, cell_value, columns: tuple[str, ...] = (),
           column_values=lambda result: []) -> list[str]:
    lines = [f"| {title} | " + " | ".join(VARIANTS + columns) + " |",
             "|---" * (len(VARIANTS) + len(columns) + 1) + "|"]
    for cell in ALL_CELLS:
        if cell in report["cells"]:
            result = report["cells"][cell]
            row = [cell_value(result["variants"][v]) if v in result["variants"] else "not run" for v in VARIANTS]
            lines.append(f"| {cell} | " + " | ".join(row + column_values(result)) + " |")
    return lines


def markdown_table(report: dict[str, Any]) -> str:
    """B-validation mAP (mean ± std), the best variant and auto's choice; then, per variant, mAP over the
    classes domain A knows (what zero-shot is scored on), AP50 and seconds."""
    def summary(result):
        within = result.get("auto_within_one_spread_of_best")
        return [", ".join(result.get("auto_choice", ["not run"])), result.get("best", "not run"),
                "not run" if within is None else ("yes" if within else "NO"),
                f"{result['pretrained_over_scratch']}×" if "pretrained_over_scratch" in result else "not run"]

    lines = _table(report, "mAP", lambda v: f"{v['map_mean']:.3f} ± {v['map_std']:.3f}",
                   ("auto chose", "best", "auto within one spread", "best / scratch"), summary)
    lines += [""] + _table(report, "shared-class mAP · AP50 · seconds",
                           lambda v: f"{_shared_classes_map(v['per_class_ap_mean']):.3f} · "
                                     f"{v['ap50_mean']:.3f} · {v['seconds_mean']:.0f} s")
    return "\n".join(lines) + "\n"


def draw_chart(report: dict[str, Any], out: Path) -> None:
    """Grouped bars (mAP mean) with error bars (± std), one group per cell."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    cells = [c for c in ALL_CELLS if c in report["cells"]]
    figure = Figure(figsize=(1.6 * max(2, len(cells)) + 2.4, 4.2), dpi=100, layout="constrained")
    axes = figure.subplots()
    width = 0.8 / len(VARIANTS)
    for j, variant in enumerate(VARIANTS):
        measured = [(i, report["cells"][c]["variants"][variant]) for i, c in enumerate(cells)
                    if variant in report["cells"][c]["variants"]]
        if measured:
            axes.bar([i + (j - (len(VARIANTS) - 1) / 2) * width for i, _ in measured],
                     [v["map_mean"] for _, v in measured], width, yerr=[v["map_std"] for _, v in measured],
                     capsize=2, color=colormaps["tab20"](j % 20), label=variant)  # more variants than the 10-colour cycle
    axes.set_xticks(range(len(cells)), cells)
    axes.set_ylim(bottom=0)
    axes.set_ylabel("mAP")
    axes.set_title(f"B-validation mAP (mean ± std over {report['settings']['seeds']} seeds)")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
    figure.savefig(out)


def _choices(option: str, value: str | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    chosen = tuple(value.split(",")) if value else allowed
    unknown = set(chosen) - set(allowed)
    if unknown:
        raise ValueError(f"{option}: unknown {sorted(unknown)}; choose from {list(allowed)}")
    return chosen


def cmd_transfer(args) -> int:
    if importlib.util.find_spec("matplotlib") is None:  # the chart is drawn last: say so before hours of training
        raise ValueError("the transfer chart needs matplotlib: pip install 'artdet[train]'")
    settings = Settings.tiny() if args.tiny else Settings()
    if args.seeds:
        settings.seeds = args.seeds
    cells = ALL_CELLS if args.cells == "all" else _choices("--cells", args.cells, ALL_CELLS) if args.cells else CELLS
    variants = _choices("--variants", args.variants, VARIANTS)
    report = run_experiment(Path(args.out), settings, cells, variants)
    print(markdown_table(report), end="")
    return 0


def add_experiment_commands(subparsers) -> None:
    experiment = subparsers.add_parser("experiment", help="reproducible experiments").add_subparsers(
        dest="experiment", required=True)
    p = experiment.add_parser("transfer", help="fine-tuning strategies on painting-like scenes vs alternatives")
    p.add_argument("--out", required=True, help="folder for data, runs, transfer.json / .png / .md")
    p.add_argument("--tiny", action="store_true", help="a few images and steps: checks the plumbing only")
    p.add_argument("--seeds", type=int, help="seeds per variant (default 3)")
    p.add_argument("--cells", help=f"comma-separated subset of {','.join(ALL_CELLS)}, or all (default: the four "
                                   f"cells auto was calibrated on; {', '.join(HELD_OUT_CELLS)} are held out)")
    p.add_argument("--variants", help=f"comma-separated subset of {','.join(VARIANTS)}; results merge into an "
                                      "earlier transfer.json in --out made with the same settings")
    p.set_defaults(handler=cmd_transfer)
    from artdet.tools.experiments.active import add_command as add_active_command

    add_active_command(experiment)
