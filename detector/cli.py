"""The engine's commands: artdet train | eval | export | detect (local model).

Heavy imports (torch) happen inside the commands that need them, so `artdet detect` stays light.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from artdet.detector.config import (AUGMENT_SCHEMA, DETECTIONS_PER_IMAGE, EXPORT_SCORE_THRESHOLD,
                                    MAX_VARIANT_AP50_DROP, SCORE_THRESHOLD, TRAIN_SCHEMA, AugmentConfig,
                                    TrainConfig)
from artdet.detector.results import DetectionResult

ANNOTATIONS_HELP = ("COCO JSON (Roboflow, CVAT COCO 1.0, Label Studio COCO), a Label Studio JSON or JSON-MIN export, "
                    "CVAT for images 1.1 XML, a Pascal VOC folder of XML files, or a zip of one as the tool exports it")
IMAGES_HELP = ("the folder the images are in (default: beside the annotations, or the zip's own); images a tool "
               "renamed (Label Studio's /data/upload/<project>/<hex>-<name>) are found by original name under it")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_train_config_arguments(parser: argparse.ArgumentParser, remote: bool = False) -> None:
    """One flag per TrainConfig field, typed, with choices, range and default from the schema.

    Flags default to None (= the config's own default; validate() checks the ranges). `remote`: only what a
    caller of the service may set (no server-owned fields, augmentation on/off only).
    """
    for spec in TRAIN_SCHEMA.values():
        if spec.kind == "section" or (remote and spec.server_owned):
            continue
        kwargs: dict[str, Any] = {"default": None, "help": spec.describe()}
        if spec.kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif spec.kind == "floats":
            kwargs.update(type=float, nargs="+")
        else:
            kwargs["type"] = {"int": int, "float": float}.get(spec.kind, str)
            if spec.choices:
                kwargs["choices"] = spec.choices
        parser.add_argument(_flag(spec.name), dest=spec.name, **kwargs)
    enabled = AUGMENT_SCHEMA["enabled"]
    parser.add_argument("--augment", dest="augment_enabled", action=argparse.BooleanOptionalAction, default=None,
                        help=enabled.describe())
    if remote:
        return
    for spec in AUGMENT_SCHEMA.values():
        if spec.name != "enabled":
            parser.add_argument(f"--aug-{spec.name.replace('_', '-')}", dest=f"aug_{spec.name}", type=float,
                                default=None, help=spec.describe())


def train_config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    config = base or TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None and f.name != "augment":
            setattr(config, f.name, tuple(value) if isinstance(value, list) else value)
    if getattr(args, "augment_enabled", None) is not None:
        config.augment.enabled = args.augment_enabled
    for f in dataclasses.fields(AugmentConfig):
        value = getattr(args, f"aug_{f.name}", None)
        if value is not None:
            setattr(config.augment, f.name, value)
    return config


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume:
        from artdet.detector.training import finished_summary, train

        if finished_summary(Path(args.resume)) is not None:
            print(f"{args.resume} has finished training; nothing to resume (results in "
                  f"{args.resume}/metrics.json)", file=sys.stderr)
            return 0
        summary = train(None, args.resume, resume=True, progress=not args.quiet)
    else:
        if not args.out:
            raise ValueError("--out: a run directory is required (or --resume RUN_DIR)")
        config = train_config_from_args(args)
        config.validate()  # before torch loads, and before --overwrite removes anything
        if (Path(args.out) / "config.json").exists():
            if not args.overwrite:
                raise ValueError(f"--out: {args.out} already holds a run; use --resume {args.out} or --overwrite")
            shutil.rmtree(args.out)
        from artdet.detector.training import train

        summary = train(config, args.out, progress=not args.quiet)
    if summary:
        final, baseline = summary["final"], summary["baseline"]
        print(f"run {summary['run_id']}: baseline mAP {baseline['map']:.4f} -> fine-tuned mAP "
              f"{final.get('map', 0.0):.4f} (AP50 {final.get('ap50', 0.0):.4f}); strategy "
              f"{summary['strategy']['strategy']}; results in {args.resume or args.out}/metrics.json")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from artdet.detector.config import TrainConfig
    from artdet.detector.export import export_onnx
    from artdet.detector.training import load_datasets
    from artdet.detector.annotation_formats import load_annotations

    val, train = None, None
    if (Path(args.run) / "config.json").is_file():
        config = TrainConfig.from_dict(json.loads((Path(args.run) / "config.json").read_text()))
        train, val = load_datasets(config)
    if args.val:
        val = load_annotations(args.val, args.images)
    result = export_onnx(args.run, args.out, val, score_threshold=args.score_threshold, check=args.check)
    parity = result["parity"]
    if parity:
        print(f"parity: {parity['summary']}", file=sys.stderr)
    print(result["path"])
    if args.variants:
        from artdet.detector.variants import build_variants

        if val is None:
            raise ValueError("export --variants: validation images are needed (--val, or a run directory)")
        calibration = [r.path for r in (train or val).images]
        base, reports = build_variants(result["path"], val, args.variants.split(","), calibration,
                                       args.max_ap50_drop)
        report = {"fp32": base, "variants": [r.to_dict() for r in reports]}
        Path(args.out).with_suffix(".variants.json").write_text(json.dumps(report, indent=1))
        for r in reports:
            what = f"refused: {r.refused}" if r.refused else f"{r.path} ({r.size_bytes / 1e6:.1f} MB)"
            print(f"{r.kind}: AP50 {r.ap50:.4f} (fp32 {base['ap50']:.4f}), {r.latency_ms_p50:.0f} ms "
                  f"(fp32 {base['latency_ms_p50']:.0f}); {what}", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from artdet.detector.coco_eval import evaluate_results
    from artdet.detector.dataset import load_coco
    from artdet.detector.inference import Detector

    detector = Detector(args.model, intra_op_threads=args.threads)
    dataset = load_coco(args.ann, args.images, class_names=detector.class_names)
    results = [detector.detect(record.path, score_threshold=0.0)
               for record in tqdm(dataset.images, desc="eval", disable=args.quiet)]
    print_json(evaluate_results(dataset, results))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Every problem of an annotation file (or VOC folder) with its id, as `push` would find them; else counts."""
    from artdet.detector.annotation_formats import opened, read_annotations
    from artdet.detector.dataset import load_coco

    with opened(Path(args.annotations), args.images) as (path, images):
        read = read_annotations(path, images)
        statistics = load_coco(read.coco, read.image_root, source=args.annotations).statistics()
    for note in read.notes:
        print(f"artdet validate: {note}", file=sys.stderr)
    if args.json:
        print_json(statistics)
    else:
        per_class = ", ".join(f"{name} {count}" for name, count in statistics["boxes_per_class"].items())
        print(f"valid: {statistics['images']} images ({statistics['negative_images']} without boxes), "
              f"{statistics['boxes']} boxes ({per_class})")
    return 0


def _images_in(path: Path) -> list[Path]:
    if path.is_dir():
        from artdet.detector.images import IMAGE_SUFFIXES

        return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [path]


def cmd_detect_local(args: argparse.Namespace) -> int:
    from artdet.detector.draw import save_drawing
    from artdet.detector.images import ImageDecodeError, decode_image
    from artdet.detector.inference import Detector

    detector = Detector(args.model, intra_op_threads=args.threads)
    root = Path(args.image)
    if not root.exists():
        raise FileNotFoundError(f"image not found: {root}")
    files = _images_in(root)
    classes = args.classes.split(",") if args.classes else None
    results, skipped = [], 0
    for path in files:
        started = time.perf_counter()
        try:
            result = detector.detect(path, args.threshold, args.top_k, classes)
        except (ImageDecodeError, OSError) as exc:
            if not root.is_dir() or args.strict:
                raise
            skipped += 1
            print(f"artdet detect: skipped {path.relative_to(root)}: {exc}", file=sys.stderr)
            continue
        result.time_ms = (time.perf_counter() - started) * 1000
        results.append((path, result))
        if args.draw:
            out = Path(args.draw) if not root.is_dir() else Path(args.draw) / path.relative_to(root).with_suffix(".png")
            save_drawing(decode_image(path), result, out)
    if files and not results:
        raise ValueError(f"detect: none of the {len(files)} images in {root} could be read")
    if args.coco:
        write_coco_predictions(results, root, detector.class_names, detector.card.category_ids, Path(args.coco))
    if args.cvat:
        write_cvat_predictions(results, root, detector.class_names, args.threshold, Path(args.cvat))
    if args.json or not (args.coco or args.cvat):
        show_results([(str(p.relative_to(root)) if root.is_dir() else None, r) for p, r in results], args)
    if skipped:
        print(f"artdet detect: {skipped} of {len(files)} images skipped", file=sys.stderr)
    return 0


def show_results(results: list[tuple[str | None, DetectionResult]], args: argparse.Namespace) -> None:
    """Detections as `artdet detect` prints them, from a local model or a server alike: JSON with --json
    (a list with each file's name for a folder), else a line per detection."""
    if args.json:
        rows = [({"file": name} if name is not None else {}) | result.to_json() for name, result in results]
        print_json(rows if len(results) != 1 or results[0][0] is not None else rows[0])
        return
    for name, result in results:
        for line in result.to_text(args.threshold):
            print(f"{name}: {line}" if name is not None else line)
        version = f" v{result.model_version}" if result.model_version else ""
        timing = f", {result.time_ms:.0f} ms" if result.time_ms is not None else ""
        print(f"({name + ': ' if name else ''}model {result.model}{version}{timing})", file=sys.stderr)


def write_coco_predictions(results, root: Path, class_names: list[str], category_ids: list[int], out: Path) -> None:
    """A COCO dataset whose annotations are predictions (with scores): CVAT and Label Studio import it."""
    ids = category_ids or list(range(1, len(class_names) + 1))
    coco: dict[str, Any] = {"images": [], "annotations": [],
                            "categories": [{"id": i, "name": n} for i, n in zip(ids, class_names)]}
    for image_id, (path, result) in enumerate(results, start=1):
        name = str(path.relative_to(root)) if root.is_dir() else path.name
        coco["images"].append({"id": image_id, "file_name": name, "width": result.width, "height": result.height})
        for det in result.detections:
            x1, y1, x2, y2 = det.box
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": ids[det.label_id - 1],
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0, "score": round(det.score, 4)})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(coco, indent=1))


def write_cvat_predictions(results, root: Path, class_names: list[str], threshold: float, out: Path) -> None:
    """A zip CVAT imports into a task as "CVAT for images 1.1": annotations.xml with the boxes scoring at least
    `threshold`, each image under its name relative to the folder (as a task made from that folder names it)."""
    import zipfile

    from artdet.detector.cvat import ANNOTATION_FILE, cvat_xml

    images = []
    for path, result in results:
        name = path.relative_to(root).as_posix() if root.is_dir() else path.name
        boxes = [(det.label, *det.box) for det in result.detections if det.score >= threshold]
        images.append((name, result.width, result.height, boxes))
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(ANNOTATION_FILE, cvat_xml(class_names, images))


def add_engine_commands(subparsers) -> None:
    p = subparsers.add_parser("train", help="fine-tune a detector (or --resume a run)")
    p.add_argument("--out", help="run directory to create")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_train_config_arguments(p)
    p.set_defaults(handler=cmd_train)

    p = subparsers.add_parser("export", help="export a run's best model to ONNX and check parity")
    p.add_argument("run", help="run directory or checkpoint (.pt)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--val", help="annotations whose images the parity check uses (default: the run's)")
    p.add_argument("--images", help="image root for --val")
    p.add_argument("--score-threshold", type=float, default=EXPORT_SCORE_THRESHOLD,
                   help=f"lowest score the graph keeps (default: {EXPORT_SCORE_THRESHOLD})")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True, help="PyTorch parity check")
    p.add_argument("--variants", help="also build these beside it, each measured against fp32: int8, fp16, ort "
                                      "(comma-separated); a report goes to OUT's name with .variants.json")
    p.add_argument("--max-ap50-drop", type=float, default=MAX_VARIANT_AP50_DROP,
                   help=f"a variant losing more AP50 than this against fp32 is not kept (default "
                        f"{MAX_VARIANT_AP50_DROP}: one point)")
    p.set_defaults(handler=cmd_export)

    p = subparsers.add_parser("validate", help="check annotations and their images before pushing")
    p.add_argument("annotations", help=ANNOTATIONS_HELP)
    p.add_argument("--images", help=IMAGES_HELP)
    p.add_argument("--json", action="store_true", help="the statistics as JSON")
    p.set_defaults(handler=cmd_validate)

    p = subparsers.add_parser("eval", help="COCO metrics of an ONNX model on annotations (JSON)")
    p.add_argument("model", help="ONNX model")
    p.add_argument("--ann", required=True, help="COCO annotations")
    p.add_argument("--images", help="image root (default: the annotation file's folder)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=cmd_eval)


def add_detect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="image file, or a folder of images")
    p.add_argument("--model", help="an ONNX model file (detection here), or a model name on the server that "
                   "--server or $ARTDET_SERVER names (detection there)")
    p.add_argument("--json", action="store_true", help="print detections as JSON")
    p.add_argument("--draw", help="PNG to draw labelled boxes into (a folder when IMAGE is a folder)")
    p.add_argument("--coco", help="write predictions as a COCO file (pre-annotations for CVAT / Label Studio)")
    p.add_argument("--cvat", metavar="OUT.zip", help="write predictions as a zip CVAT imports into a task "
                                                     "(format \"CVAT for images 1.1\")")
    p.add_argument("--threshold", type=float, default=SCORE_THRESHOLD,
                   help=f"minimum score (default: {SCORE_THRESHOLD})")
    p.add_argument("--top-k", type=int, default=DETECTIONS_PER_IMAGE,
                   help=f"at most this many detections per image (default: {DETECTIONS_PER_IMAGE})")
    p.add_argument("--classes", help="comma-separated class names to keep")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable image of a folder (default: skip it with a warning)")
