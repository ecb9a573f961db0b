"""`artdet`: one command line for the engine (train, eval, export, detect) and the service's clients."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from artdet.detector.cli import add_detect_arguments, add_engine_commands, cmd_detect_local
from artdet.tools.bench.run import add_bench_command
from artdet.tools.experiments.transfer import add_experiment_commands
from artdet.tools.service_commands import (SERVER_ENV, add_connection_arguments, add_service_commands,
                                           cmd_detect_remote)


# what `pip install artdet[train]` adds to a serving-only install
TRAINING_PACKAGES = {"torch", "torchvision", "albumentations", "onnx", "tensorboard", "matplotlib"}


def cmd_detect(args: argparse.Namespace) -> int:
    if not args.server and not (args.model and Path(args.model).is_file()):
        args.server = os.environ.get(SERVER_ENV) or None
    if args.server:
        if args.coco or Path(args.image).is_dir():
            raise ValueError("detect --server: one image at a time (--coco and folders are local-only)")
        return cmd_detect_remote(args)
    if not args.model:
        raise ValueError("detect: --model MODEL.onnx (local) or --server HOST:PORT is required")
    return cmd_detect_local(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="artdet", description="Fine-tune and serve object detectors for artworks")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_engine_commands(subparsers)
    detect = subparsers.add_parser("detect", help="detect objects in an image or a folder")
    add_detect_arguments(detect)
    add_connection_arguments(detect, required=False)
    detect.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server")
    detect.set_defaults(handler=cmd_detect)
    add_service_commands(subparsers)
    add_bench_command(subparsers)
    add_experiment_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        if exc.name not in TRAINING_PACKAGES:
            raise
        print(f"artdet {args.command}: error: this install has no training engine ({exc.name} is missing); "
              "install artdet[train]", file=sys.stderr)
        return 2
    except Exception as exc:  # every failure a user can cause ends as one clear line, not a traceback
        if type(exc).__module__.startswith("grpc") and hasattr(exc, "code"):
            hint = ""
            if exc.code().name in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                hint = " (is `artdet serve` running at that address?)"
            print(f"artdet {args.command}: error: {exc.code().name}: {exc.details()}{hint}", file=sys.stderr)
            return 2
        from artdet.tools.errors import describe

        message = describe(exc)
        if message is None:
            raise
        print(f"artdet {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
