"""`artdet`: one command line for the engine (train, eval, export, detect) and the service's clients."""

from __future__ import annotations

import argparse
import sys

from detector.cli import add_detect_arguments, add_engine_commands, cmd_detect_local


def cmd_detect(args: argparse.Namespace) -> int:
    if not args.model:
        raise ValueError("detect: --model MODEL.onnx is required")
    return cmd_detect_local(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="artdet", description="Fine-tune and serve object detectors for artworks")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_engine_commands(subparsers)
    detect = subparsers.add_parser("detect", help="detect objects in an image or a folder")
    add_detect_arguments(detect)
    detect.set_defaults(handler=cmd_detect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure a user can cause ends as one clear line, not a traceback
        from tools.errors import describe

        message = describe(exc)
        if message is None:
            raise
        print(f"artdet {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
