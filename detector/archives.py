"""Files laid out in a scratch folder from names a client chose: zips unpacked member by member, every name
checked to stay inside the folder, every byte counted against a limit."""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from artdet.detector.dataset import file_name_problem
from artdet.detector.errors import InvalidArgument, ResourceExhausted, show
from artdet.detector.images import resolve_inside

COPY_CHUNK = 1 << 20
MAX_ZIP_MEMBERS = 200_000


class ByteBudget:
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


def place_file(root: Path, name: str, field: str) -> Path:
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


def extract_zip(archive: Path, root: Path, budget: ByteBudget) -> None:
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.infolist() if not m.is_dir()]
            if len(members) > MAX_ZIP_MEMBERS:
                raise InvalidArgument(f"{archive.name}: {len(members)} files; at most {MAX_ZIP_MEMBERS}")
            for member in members:
                if PurePosixPath(member.filename).parts[:1] == ("__MACOSX",):
                    continue  # Finder's resource forks, not images
                target = place_file(root, member.filename, archive.name)
                with zipped.open(member) as source:
                    budget.copy(source, target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise InvalidArgument(f"{archive.name}: not a zip file that can be read ({exc})") from None
