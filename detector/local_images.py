"""An annotation tool's image reference matched to the user's own copy of the image under an image root.

Tools keep images under names of their own: Label Studio stores an upload as
`/data/upload/<project>/<8 hex>-<original name>`, serves local storage as `/data/local-files/?d=<path>`,
keeps URLs as they were given; CVAT and Roboflow exports keep paths relative to their images folder. The
user's files carry the original names, in whatever folders they keep them in.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

from artdet.detector.dataset import file_name_problem, normalize_file_name
from artdet.detector.images import IMAGE_SUFFIXES

# the prefix Label Studio puts on an uploaded file's name to keep uploads apart
UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
# Label Studio's storage (Django) cuts a name too long for its column and adds "_" and 7 random characters
SHORTENED = re.compile(r"^(?P<start>.+)_[A-Za-z0-9]{7}(?P<suffix>\.[^.]+)$")


def reference_path(reference: str) -> str:
    """The path inside a reference: a URL's path, local storage's `d` parameter, or the name as it is."""
    if reference.startswith("/data/local-files"):
        return unquote(parse_qs(urlsplit(reference).query).get("d", [""])[0])
    parts = urlsplit(reference)
    if parts.scheme in ("http", "https", "s3", "gs", "azure-blob"):
        return unquote(parts.path)
    return reference


def original_name(reference: str) -> str:
    """The file name the image had before the tool stored it."""
    name = PurePosixPath(reference_path(reference).replace("\\", "/")).name
    if "/data/upload/" in urlsplit(reference).path:
        name = UPLOAD_PREFIX.sub("", name, count=1)
    return name


def is_upload(reference: str) -> bool:
    """A file Label Studio stored on upload (its path, or the name it gave it)."""
    path = urlsplit(reference).path.replace("\\", "/")
    return "/data/upload/" in path or "media/upload/" in path or bool(UPLOAD_PREFIX.match(PurePosixPath(path).name))


def is_tool_reference(reference: str) -> bool:
    """A name an annotation tool gave an image (an upload, local storage, a URL), not the user's own path."""
    return is_upload(reference) or reference.startswith("/data/local-files") or \
        urlsplit(reference).scheme in ("http", "https", "s3", "gs", "azure-blob")


def looks_like_image_reference(value: object) -> bool:
    if not isinstance(value, str) or not value:
        return False
    return (value.startswith(("/data/", "http://", "https://", "s3://", "gs://"))
            or PurePosixPath(urlsplit(value).path).suffix.lower() in IMAGE_SUFFIXES)


class LocalImages:
    """The images under `root`, found by a tool's reference: the same relative path, else a shorter tail of
    it, else the original file name anywhere under the root (when one file alone has it)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._by_name: dict[str, list[str]] | None = None

    def _names(self) -> dict[str, list[str]]:
        if self._by_name is None:
            self._by_name = {}
            if self.root.is_dir():
                for path in sorted(self.root.rglob("*")):
                    if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                        relative = path.relative_to(self.root).as_posix()
                        self._by_name.setdefault(path.name, []).append(relative)
                        if " " in path.name:  # Label Studio stores an upload's spaces as underscores
                            self._by_name.setdefault(path.name.replace(" ", "_"), []).append(relative)
        return self._by_name

    def find(self, reference: str) -> tuple[str | None, str | None]:
        """(file name relative to the root, None), or (None, why not)."""
        path = reference_path(reference).replace("\\", "/").lstrip("/")
        parts = [p for p in PurePosixPath(path).parts if p not in ("", ".", "..")]
        for start in range(len(parts)):  # the whole path first, then ever shorter tails
            candidate = "/".join(parts[start:])
            if file_name_problem(candidate) is None and (self.root / candidate).is_file():
                return normalize_file_name(candidate), None
        name = original_name(reference)
        matches = self._names().get(name, [])
        if not matches and UPLOAD_PREFIX.match(name):  # an upload's name in another tool's export (COCO)
            name = UPLOAD_PREFIX.sub("", name, count=1)
            matches = self._names().get(name, [])
        shortened = SHORTENED.match(name) if is_upload(reference) else None
        if not matches and shortened:
            start, suffix = shortened.group("start"), shortened.group("suffix").lower()
            matches = sorted({path for known, paths in self._names().items() if known.startswith(start)
                              and known.lower().endswith(suffix) for path in paths})
        if len(matches) == 1:
            return matches[0], None
        if matches:
            shown = ", ".join(matches[:3]) + (" ..." if len(matches) > 3 else "")
            return None, f"image {name!r} is ambiguous: {len(matches)} files have that name ({shown})"
        return None, f"image {name!r} is not under the image folder (give it with --images)"
