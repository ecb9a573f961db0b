"""A dataset the browser sends (a zip as annotation tools export it, or a COCO JSON with its image files)
laid out in a scratch folder, then sent through UploadDataset like `artdet push` sends one: the server's
ingest validates it, whatever the browser did."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import BinaryIO, Iterable

from artdet.detector.archives import ByteBudget, extract_zip, place_file


def lay_out(files: Iterable[tuple[str, BinaryIO]], root: Path, max_bytes: int) -> None:
    """Write each (relative name, stream) under `root`; zips are unpacked where they lie."""
    budget = ByteBudget(max_bytes)
    for name, stream in files:
        target = place_file(root, name, "files")
        budget.copy(stream, target)
        if target.suffix.lower() == ".zip":
            extract_zip(target, root, budget)
            target.unlink()


def discard(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
