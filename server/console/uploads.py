"""A dataset the browser sends (a zip as annotation tools export it, or a COCO JSON with its image files)
laid out in a scratch folder, then sent through UploadDataset like `artdet push` sends one: the server's
ingest validates it, whatever the browser did."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable

from artdet.detector.dataset import file_name_problem
from artdet.detector.errors import InvalidArgument, ResourceExhausted, show
from artdet.detector.images import resolve_inside

COPY_CHUNK = 1 << 20
MAX_ZIP_MEMBERS = 200_000


class _Budget:
    """Bytes written to the scratch folder, across every file and zip member: at most the upload limit."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.used = 0

    def copy(self, source: BinaryIO, target: Path) -> None:
        with target.open("wb") as out:
            while data := source.read(COPY_CHUNK):
                self.used += len(data)
                if self.used > self.max_bytes:
                    raise ResourceExhausted(f"upload exceeds the server's limit of {self.max_bytes} bytes")
                out.write(data)


def _place(root: Path, name: str, field: str) -> Path:
    name = name.replace("\\", "/").lstrip("/")
    problem = file_name_problem(name)
    if problem:
        raise InvalidArgument(f"{field}: {problem}")
    try:
        path = resolve_inside(root, name)
    except ValueError:
        raise InvalidArgument(f"{field}: {show(name)} points outside the upload") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _extract(archive: Path, root: Path, budget: _Budget) -> None:
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.infolist() if not m.is_dir()]
            if len(members) > MAX_ZIP_MEMBERS:
                raise InvalidArgument(f"{archive.name}: {len(members)} files; at most {MAX_ZIP_MEMBERS}")
            for member in members:
                if PurePosixPath(member.filename).parts[:1] == ("__MACOSX",):
                    continue  # Finder's resource forks, not images
                target = _place(root, member.filename, archive.name)
                with zipped.open(member) as source:
                    budget.copy(source, target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise InvalidArgument(f"{archive.name}: not a zip file this server can read ({exc})") from None
    archive.unlink()


def lay_out(files: Iterable[tuple[str, BinaryIO]], root: Path, max_bytes: int) -> None:
    """Write each (relative name, stream) under `root`; zips are unpacked where they lie."""
    budget = _Budget(max_bytes)
    for name, stream in files:
        target = _place(root, name, "files")
        budget.copy(stream, target)
        if target.suffix.lower() == ".zip":
            _extract(target, root, budget)


def _references(annotation: Path) -> list[str]:
    try:
        coco = json.loads(annotation.read_bytes())
        return [str(image.get("file_name", "")).replace("\\", "/") for image in coco.get("images", [])]
    except (ValueError, AttributeError, TypeError, OSError):
        return []


def find_dataset(root: Path) -> tuple[Path, Path]:
    """The one COCO annotation file in the upload, and the folder its file_name entries are relative to:
    of its own folder, an images/ beside it, the upload's top and its images/, the one that holds most of
    them (CVAT puts the JSON under annotations/ and the images under images/; Label Studio and Roboflow put
    them together). The server names the images none of them holds."""
    annotations = sorted(p for p in root.rglob("*.json") if p.is_file())
    if not annotations:
        raise InvalidArgument("files: no COCO annotation file (.json) in the upload")
    if len(annotations) > 1:
        names = ", ".join(str(p.relative_to(root)) for p in annotations[:5])
        raise InvalidArgument(f"files: {len(annotations)} annotation files ({names}); upload one dataset at a time")
    annotation = annotations[0]
    references = _references(annotation)
    candidates = dict.fromkeys([annotation.parent, annotation.parent / "images", annotation.parent.parent / "images",
                                root, root / "images"])

    def held(folder: Path) -> int:
        count = 0
        for name in references:
            try:
                count += resolve_inside(folder, name).is_file()
            except ValueError:
                continue
        return count

    best = max((c for c in candidates if c.is_dir() and c.is_relative_to(root)), key=held)
    return annotation, best


def discard(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
