"""`artdet bench --variants`: fp32 against its int8 and fp16 variants in onnxruntime, on the same images and
threads, interleaved call by call, for each architecture: latency p50 with its spread, file size, and the
AP50/mAP change where a trained model and its validation set are given (fabricated weights otherwise, whose
accuracy means nothing)."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from artdet.detector.files import save_json

KINDS = ("fp32", "int8", "fp16")


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(values, n=4)
    return q1, median, q3


def _time_interleaved(detectors: dict, images: list[np.ndarray], rounds: int) -> dict[str, list[float]]:
    """Milliseconds per call for each detector, the detectors taking turns on each image (so drift in the
    machine's speed falls on all of them alike)."""
    times: dict[str, list[float]] = {kind: [] for kind in detectors}
    for kind, detector in detectors.items():  # warm-up: onnxruntime allocates on the first calls
        for image in images[:2]:
            detector.detect(image, score_threshold=0.0)
    for _ in range(rounds):
        for image in images:
            for kind, detector in detectors.items():
                started = time.perf_counter()
                detector.detect(image, score_threshold=0.0)
                times[kind].append((time.perf_counter() - started) * 1000)
    return times


def bench_model(onnx_path: Path, images: list[np.ndarray], threads: int, rounds: int, calibration: list[np.ndarray],
                val=None) -> dict:
    from artdet.detector.inference import Detector
    from artdet.detector.coco_eval import evaluate_results
    from artdet.detector.variants import build_fp16, build_int8, detect_all

    paths = {"fp32": onnx_path, "int8": onnx_path.with_name("model.int8.onnx"),
             "fp16": onnx_path.with_name("model.fp16.onnx")}
    build_int8(onnx_path, paths["int8"], calibration)
    build_fp16(onnx_path, paths["fp16"])
    detectors = {kind: Detector(path, intra_op_threads=threads, inter_op_threads=1) for kind, path in paths.items()}
    times = _time_interleaved(detectors, images, rounds)
    result: dict = {"images": len(images)}
    for kind in KINDS:
        q1, median, q3 = _quartiles(times[kind])
        ratios = [t / f for t, f in zip(times[kind], times["fp32"])]
        r1, ratio, r3 = _quartiles(ratios)
        result[kind] = {"size_mb": round(paths[kind].stat().st_size / 1e6, 1), "p50_ms": round(median, 1),
                        "iqr_ms": [round(q1, 1), round(q3, 1)], "calls": len(times[kind]),
                        "p50_ratio_to_fp32": round(ratio, 3), "ratio_iqr": [round(r1, 3), round(r3, 3)]}
    if val is not None:
        for kind, detector in detectors.items():
            metrics = evaluate_results(val, detect_all(detector, [_image(r.path) for r in val.images])[0])
            result[kind].update(map=round(metrics["map"], 4), ap50=round(metrics["ap50"], 4))
    return result


def _image(path) -> np.ndarray:
    from artdet.detector.images import decode_image

    return decode_image(path, source=Path(path).name)


def run_variants_bench(quick: bool, out: Path | None, models: tuple[str, ...], threads: int,
                       trained: str | None = None, trained_val: str | None = None) -> dict:
    from artdet.detector.dataset import load_coco
    from artdet.detector.export import export_onnx
    from artdet.tools.bench.models import fabricate_onnx
    from artdet.tools.bench.run import PEOPLE_ART, _dataset, _settings

    rounds = 2 if quick else 5
    report: dict = {"threads": threads, "rounds": rounds, "models": {},
                    "how": "each call: fp32, int8, fp16 in turn on the same image; p50 and interquartile range "
                           "over every call; the ratio's p50 and IQR over per-call ratios"}
    with tempfile.TemporaryDirectory() as tmp:
        data = load_coco(_dataset(Path(tmp)))
        images = [_image(r.path) for r in data.images[:8 if quick else 12]]
        calibration = [_image(r.path) for r in data.images[-16:]]
        for arch in models:
            folder = Path(tmp) / arch
            _, onnx_path = fabricate_onnx(arch, data.class_names, images[:8], folder,
                                          _settings(quick)["max_size"][arch])
            report["models"][arch] = {"weights": "fabricated (speed and size only; accuracy means nothing)",
                                      **bench_model(onnx_path, images, threads, rounds, calibration)}
        if trained:
            val = load_coco(trained_val)
            folder = Path(tmp) / "trained"
            folder.mkdir()
            onnx_path = Path(export_onnx(trained, folder / "model.onnx", val, check=False)["path"])
            val_images = [_image(r.path) for r in val.images[:12]]
            report["models"]["trained"] = {"weights": f"{trained} (the source of the accuracy figures)",
                                           "val": trained_val, **bench_model(onnx_path, val_images, threads, rounds,
                                                                             val_images, val)}
    report["dataset"] = "people-art-mini" if (PEOPLE_ART / "train.json").is_file() else "synthetic shapes"
    if out:
        save_json(report, out)
    return report


def print_variants_report(report: dict) -> None:
    for name, result in report["models"].items():
        print(f"{name} ({result['weights']}):")
        for kind in KINDS:
            r = result[kind]
            accuracy = f", mAP {r['map']:.4f}, AP50 {r['ap50']:.4f}" if "map" in r else ""
            print(f"  {kind}: {r['size_mb']} MB, p50 {r['p50_ms']} ms (IQR {r['iqr_ms'][0]}–{r['iqr_ms'][1]}), "
                  f"{r['p50_ratio_to_fp32']}× fp32 (IQR {r['ratio_iqr'][0]}–{r['ratio_iqr'][1]}){accuracy}")
