"""`artdet bench [--quick] --json OUT.json`: every comparison in one run, side by side on the same inputs."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from artdet.detector.files import save_json

ROOT = Path(__file__).resolve().parents[2]
PEOPLE_ART = ROOT.parent / "shared" / "data" / "people-art-mini"
MODELS = ("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_resnet50_fpn")
ROWS = ("detect_grpc_p50_ms", "detect_grpc_p99_ms", "detect_ort_p50_ms", "detect_ort_p99_ms", "detect_torch_p50_ms",
        "detect_ort_12mp_p50_ms_full_decode", "detect_ort_12mp_p50_ms_draft",
        "throughput_grpc_best_rps", "throughput_ort_best_rps", "serve_ready_s", "serve_rss_mb",
        "train_stage1_img_s", "train_stage2_img_s", "train_plain_loop_img_s", "train_stage1_speedup",
        "train_data_wait_share", "train_peak_rss_mb")


def _settings(quick: bool) -> dict:
    return {
        "latency_iterations": 15 if quick else 50,
        "throughput_levels": (1, 2, 4, 8),
        "calls_per_client": 3 if quick else 10,
        "train_iters": 3 if quick else 8,
        "upload_mb": 60 if quick else 300,
        "max_size": {MODELS[0]: 640, MODELS[1]: 512 if quick else 800},
    }


def _dataset(work: Path) -> Path:
    if (PEOPLE_ART / "train.json").is_file():
        return PEOPLE_ART / "train.json"
    from artdet.tools.experiments.synthetic import write_shapes_dataset

    return write_shapes_dataset(work / "synthetic", images=24, size=(480, 360), seed=0)


def run_bench(quick: bool, out: Path | None, models: tuple[str, ...] = MODELS, threads: int = 2,
              skip: tuple[str, ...] = ()) -> dict:
    from artdet.detector.dataset import load_coco
    from artdet.detector.images import decode_image
    from artdet.tools.bench.models import fabricate_onnx
    from artdet.tools.bench.serving import bench_serving
    from artdet.tools.bench.upload import bench_upload

    settings = _settings(quick)
    report: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "python": platform.python_version()},
                    "quick": quick, "threads": threads,
                    "weights": "random, BatchNorm statistics calibrated on 8 training images (speed only)",
                    "settings": {**settings, "throughput_levels": list(settings["throughput_levels"])},
                    "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ann = _dataset(work)
        dataset = load_coco(ann)
        image_record = max(dataset.images, key=lambda im: im.width * im.height)
        image = image_record.path.read_bytes()
        report["detect_image"] = {"file": image_record.file_name, "width": image_record.width,
                                  "height": image_record.height, "bytes": len(image)}
        calibration = [decode_image(im.path) for im in dataset.images[:8]]
        for arch in models:
            started = time.time()
            result: dict = {"max_size": settings["max_size"][arch]}
            if "serving" not in skip:
                checkpoint, onnx_path = fabricate_onnx(arch, dataset.class_names, calibration, work / arch,
                                                       settings["max_size"][arch])
                result.update(bench_serving(onnx_path, checkpoint, image, work / arch, threads,
                                            settings["latency_iterations"], settings["throughput_levels"],
                                            settings["calls_per_client"]))
            if "training" not in skip:
                command = [sys.executable, "-m", "artdet.tools.bench.training", arch, "--ann", str(ann),
                           "--iters", str(settings["train_iters"]), "--max-size", str(settings["max_size"][arch]),
                           "--threads", str(threads)]
                output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
                result.update(json.loads(output))
            result["bench_seconds"] = round(time.time() - started, 1)
            report["models"][arch] = result
            print(f"bench: {arch} done in {result['bench_seconds']} s", file=sys.stderr)
        if "upload" not in skip:
            report.update(bench_upload(work, settings["upload_mb"]))
    for arch, result in report["models"].items():  # the flat keys, per model name
        report[arch] = {k: v for k, v in result.items() if k != "throughput_table"}
    if out:
        save_json(report, out)
    print(format_table(report))
    return report


def format_table(report: dict) -> str:
    models = list(report["models"])
    width = max(len(r) for r in ROWS) + 2
    lines = [f"{'':<{width}}" + "".join(f"{m.removeprefix('fasterrcnn_'):>28}" for m in models)]
    for row in ROWS:
        values = [report["models"][m].get(row) for m in models]
        if any(v is not None for v in values):
            lines.append(f"{row:<{width}}" + "".join(f"{'-' if v is None else v:>28}" for v in values))
    for key in ("upload_mb_s", "upload_rss_growth_mb", "upload_mb"):
        if key in report:
            lines.append(f"{key:<{width}}{report[key]:>28}")
    return "\n".join(lines)


def cmd_bench(args) -> int:
    if args.console:
        from artdet.tools.bench.console import run_console_bench

        run_console_bench(json_out=Path(args.json) if args.json else None)
        return 0
    if args.reliability:
        from artdet.tools.bench.reliability import cmd_reliability

        return cmd_reliability(args)
    models = tuple(args.models.split(",")) if args.models else MODELS
    if args.variants:
        from artdet.tools.bench.variants import print_variants_report, run_variants_bench

        print_variants_report(run_variants_bench(args.quick, Path(args.json) if args.json else None, models,
                                                 args.threads, args.trained, args.trained_val))
        return 0
    skip = tuple(args.skip.split(",")) if args.skip else ()
    run_bench(args.quick, Path(args.json) if args.json else None, models, args.threads, skip)
    return 0


def add_bench_command(subparsers) -> None:
    p = subparsers.add_parser("bench", help="benchmark serving, training and upload side by side")
    p.add_argument("--quick", action="store_true", help="a few minutes on 2 cores")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--models", help=f"comma-separated architectures (default: {','.join(MODELS)})")
    p.add_argument("--threads", type=int, default=2, help="threads for onnxruntime and PyTorch (default 2)")
    p.add_argument("--skip", help="comma-separated parts to skip: serving, training, upload "
                                  "(with --reliability: roles, fuzz, load, memory, faults)")
    p.add_argument("--reliability", action="store_true",
                   help="instead: fuzz, role matrix, load, memory and fault injection against a real server")
    p.add_argument("--console", action="store_true",
                   help="instead: the web console in headless Chromium (page load to interactive, job event to page)")
    p.add_argument("--variants", action="store_true",
                   help="instead: fp32 vs its int8 and fp16 variants in onnxruntime (latency, size, accuracy)")
    p.add_argument("--trained", help="--variants: a trained run or checkpoint whose accuracy change to measure too")
    p.add_argument("--trained-val", help="--variants: the validation COCO file for --trained")
    p.add_argument("--seed", type=int, default=0, help="--reliability: fuzz seed (default 0)")
    p.add_argument("--fuzz-cases", type=int, help="--reliability: fuzz requests (default 4000; 600 with --quick)")
    p.add_argument("--keep", help="--reliability: work in this folder and keep it (data dirs, server logs)")
    p.set_defaults(handler=cmd_bench)
