"""Every annotation format a dataset may come in, read into COCO for the one validator.

- COCO JSON (Roboflow, CVAT "COCO 1.0", Label Studio's COCO export, our own): as it is, with image names a
  tool changed (Label Studio's upload prefix, another folder) matched to the user's files by original name;
- a Pascal VOC folder of XML files (LabelImg, People-Art);
- Label Studio JSON and JSON-MIN exports;
- CVAT for images 1.1 XML;
- a zip of any of them laid out the way the tool writes it, images inside or beside.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from artdet.detector.archives import ByteBudget, extract_zip
from artdet.detector.cvat import ANNOTATION_FILE, cvat_xml_to_coco, is_cvat_xml
from artdet.detector.dataset import (DatasetValidationError, DetectionDataset, Problem, file_name_problem, load_coco,
                                     parse_json)
from artdet.detector.errors import InvalidArgument
from artdet.detector.images import resolve_inside
from artdet.detector.label_studio import export_kind, label_studio_to_coco
from artdet.detector.local_images import LocalImages, is_tool_reference
from artdet.detector.voc import voc_image_root, voc_to_coco

FORMATS = ("coco", "voc", "label-studio", "label-studio-min", "cvat")
MAX_ARCHIVE_BYTES = 64 << 30  # what a zip may unpack to on the user's own machine


@dataclass
class Annotations:
    format: str
    coco: dict[str, Any]
    image_root: Path
    source: str
    notes: list[str] = field(default_factory=list)
    renamed: bool = False  # file names changed from the file's own (converted, or matched to local files)


def detect_format(path: Path) -> str:
    """One of FORMATS, from the file's content ("coco" for JSON that is none of the others, or no JSON), as
    read_annotations tells them apart."""
    if path.is_dir():
        return "voc"
    content = path.read_bytes() if path.is_file() else b""
    if path.suffix.lower() == ".xml" or content[:8192].lstrip().startswith(b"<"):
        return "cvat"
    try:
        kind = export_kind(parse_json(content, str(path)))
    except DatasetValidationError:
        return "coco"  # the COCO reader names what is wrong with it
    return {"json": "label-studio", "json-min": "label-studio-min"}.get(kind or "", "coco")


def _coco_with_local_names(coco: Any, root: Path) -> tuple[Any, bool]:
    """A COCO file whose image names are not under `root` as they are, renamed to the user's files found by
    original name (Label Studio's COCO export names uploads `images/<8 hex>-<name>`). Names nothing matches
    stay, for the validator to report."""
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        return coco, False
    local = LocalImages(root)
    renamed, images = False, []
    for entry in coco["images"]:
        name = entry.get("file_name") if isinstance(entry, dict) else None
        # only names a tool gave (a plain COCO's missing file stays missing, never re-pointed by its name)
        if isinstance(name, str) and is_tool_reference(name) and (
                file_name_problem(name) is not None or not resolve_inside(root, name).is_file()):
            found, _ = local.find(name)
            if found is not None:
                entry, renamed = {**entry, "file_name": found}, True
        images.append(entry)
    return ({**coco, "images": images} if renamed else coco), renamed


def read_annotations(path: str | Path, images: str | Path | None = None) -> Annotations:
    """The annotations at `path` (file or VOC folder; not a zip: see `opened`) as COCO with its image root."""
    path = Path(path)
    source = str(path)
    if path.is_dir():
        coco, root = voc_to_coco(path, images)
        return Annotations("voc", coco, root, source)
    root = Path(images) if images is not None else path.parent  # Label Studio's names match anywhere under it
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise DatasetValidationError(source, [Problem("file", "annotation file not found")]) from None
    except OSError as exc:
        raise DatasetValidationError(source, [Problem("file", f"cannot be read ({exc.strerror})")]) from None
    if path.suffix.lower() == ".xml" or content[:8192].lstrip().startswith(b"<"):
        coco = cvat_xml_to_coco(content, source)
        root = Path(images) if images is not None else image_root(path, _image_names(path), path.parent)
        return Annotations("cvat", coco, root, source, renamed=True)
    data = parse_json(content, source)
    ls_kind = export_kind(data)
    if ls_kind is not None:
        coco, notes = label_studio_to_coco(data, source, LocalImages(root))
        return Annotations("label-studio" if ls_kind == "json" else "label-studio-min", coco, root, source, notes,
                           renamed=True)
    if images is None:
        root = image_root(path, _image_names(path), path.parent)
    coco, renamed = _coco_with_local_names(data, root)
    return Annotations("coco", coco, root, source, renamed=renamed)


def load_annotations(path: str | Path, images: str | Path | None = None, class_names: list[str] | None = None,
                     check_files: bool = True) -> DetectionDataset:
    """A dataset in any of FORMATS, validated; its images stay where they are, so not from a zip (whose
    scratch folder would be gone by the time they are read)."""
    path = Path(path)
    if path.suffix.lower() == ".zip":
        raise InvalidArgument(f"{path.name}: unzip it first (artdet validate and artdet push read zips as they are)")
    annotations = read_annotations(path, images)
    return load_coco(annotations.coco, annotations.image_root, class_names=class_names, check_files=check_files,
                     source=annotations.source)


def _image_names(annotation: Path) -> list[str]:
    try:
        content = annotation.read_bytes()
        if annotation.suffix.lower() == ".xml":
            return [image["file_name"] for image in cvat_xml_to_coco(content, annotation.name)["images"]]
        return [str(image.get("file_name", "")).replace("\\", "/") for image in json.loads(content).get("images", [])]
    except (ValueError, AttributeError, TypeError, OSError, DatasetValidationError):
        return []


def find_annotations(root: Path, what: str = "files") -> tuple[Path, Path]:
    """In a folder laid out as a tool exports a dataset: the one annotation file (a JSON, CVAT's
    annotations.xml) or VOC folder, and the folder its image names are relative to (see image_root: CVAT puts
    the annotations under annotations/ and the images under images/; Label Studio and Roboflow put them
    together). The validator names the images none of them holds."""
    candidates = sorted(p for p in root.rglob("*") if p.is_file() and (
        p.suffix.lower() == ".json" or (p.suffix.lower() == ".xml" and is_cvat_xml(p.read_bytes()[:8192]))))
    if not candidates:
        voc = sorted({p.parent for p in root.rglob("*.xml") if p.is_file()})
        if voc:
            top = voc[0] if all(v.is_relative_to(voc[0]) for v in voc) else root
            return top, voc_image_root(top)
        raise InvalidArgument(f"{what}: no annotation file (a COCO or Label Studio .json, CVAT's {ANNOTATION_FILE} "
                              "or a VOC folder of .xml files)")
    if len(candidates) > 1:
        names = ", ".join(str(p.relative_to(root)) for p in candidates[:5])
        raise InvalidArgument(f"{what}: {len(candidates)} annotation files ({names}); one dataset at a time")
    return candidates[0], image_root(candidates[0], _image_names(candidates[0]), root)


def image_root(annotation: Path, names: list[str], top: Path) -> Path:
    """Of the annotation file's folder, an images/ beside it or beside that folder, `top` and its images/, the
    folder that holds most of `names` (the first of them on a tie)."""
    folders = dict.fromkeys([annotation.parent, annotation.parent / "images", annotation.parent.parent / "images",
                             top, top / "images"])

    def held(folder: Path) -> int:
        count = 0
        for name in names:
            try:
                count += resolve_inside(folder, name).is_file()
            except (ValueError, OSError):  # outside the folder; too long a name for the file system
                continue
        return count

    return max((f for f in folders if f.is_dir() and f.is_relative_to(top)), key=held, default=annotation.parent)


@contextlib.contextmanager
def opened(path: Path, images: str | Path | None = None) -> Iterator[tuple[Path, Path | None]]:
    """(annotation file or folder, image root) for `path`; a zip is unpacked, whole, into a scratch folder for
    the duration, and its image root is the one laid out in it unless `images` names another."""
    if path.suffix.lower() != ".zip" or not path.is_file():
        yield path, (Path(images) if images is not None else None)
        return
    scratch = Path(tempfile.mkdtemp(prefix="artdet-zip-"))
    try:
        extract_zip(path, scratch, ByteBudget(MAX_ARCHIVE_BYTES))
        annotation, root = find_annotations(scratch, path.name)
        yield annotation, (Path(images) if images is not None else root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
