"""Client side of the API: channel and auth, dataset push, job watching. Used by `artdet` commands."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import grpc
from tqdm import tqdm

from artdet.v1 import artdet_pb2 as pb
from artdet.v1 import artdet_pb2_grpc as rpc
from artdet.detector.annotation_formats import detect_format, opened, read_annotations
from artdet.detector.dataset import DatasetValidationError
from artdet.detector.events import ProgressDisplay
from artdet.detector.images import resolve_inside
from artdet.detector.voc import voc_image_root

TOKEN_ENV = "ARTDET_TOKEN"
CHUNK_BYTES = 1 << 20


@dataclass
class Connection:
    channel: grpc.Channel
    metadata: tuple[tuple[str, str], ...]

    def datasets(self) -> rpc.DatasetServiceStub:
        return rpc.DatasetServiceStub(self.channel)

    def training(self) -> rpc.TrainingServiceStub:
        return rpc.TrainingServiceStub(self.channel)

    def models(self) -> rpc.ModelServiceStub:
        return rpc.ModelServiceStub(self.channel)

    def detection(self) -> rpc.DetectionServiceStub:
        return rpc.DetectionServiceStub(self.channel)


def connect(server: str, token: str | None = None, tls_ca: str | None = None,
            max_message_mb: int = 64) -> Connection:
    options = [("grpc.max_receive_message_length", max_message_mb << 20),
               ("grpc.max_send_message_length", max_message_mb << 20)]
    if tls_ca:
        credentials = grpc.ssl_channel_credentials(Path(tls_ca).read_bytes())
        channel = grpc.secure_channel(server, credentials, options=options)
    else:
        channel = grpc.insecure_channel(server, options=options)
    token = token or os.environ.get(TOKEN_ENV)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    return Connection(channel, metadata)


# -- datasets -------------------------------------------------------------------------------------

def _referenced(image_root: Path, name: str) -> list[tuple[str, Path]]:
    try:
        return [(name, resolve_inside(image_root, name))]
    except ValueError:
        return []  # not sent; the server's validation names it


def _voc_files(annotation_dir: Path, image_root: Path) -> tuple[list[pb.AnnotationFile], list[tuple[str, Path]]]:
    import xml.etree.ElementTree as ET

    annotations, images = [], []
    for xml_path in sorted(annotation_dir.rglob("*.xml")):
        content = xml_path.read_bytes()
        annotations.append(pb.AnnotationFile(file_name=str(xml_path.relative_to(annotation_dir)), content=content))
        try:
            name = (ET.fromstring(content).findtext("filename") or "").strip()
        except ET.ParseError:
            continue  # the server reports it, with every other problem
        if name:
            images.extend(_referenced(image_root, name))
    return annotations, images


def _upload_plan(name: str, annotations: Path,
                 images: Path | None) -> tuple[pb.DatasetHeader, list[tuple[str, Path]], Path, list[str]]:
    """The upload's header, the (file name, local path) of every image its annotations reference, the image root
    they were looked up under, and notes on what a conversion left out. A VOC folder goes as its XML files and a
    COCO file as it is (the server converts and validates both); Label Studio and CVAT exports, and COCO files
    whose image names a tool changed, go as COCO converted here, with the names of the user's files."""
    if annotations.is_dir():
        root = images or voc_image_root(annotations)
        annotation_files, files = _voc_files(annotations, root)
        header = pb.DatasetHeader(name=name, format=pb.DATASET_FORMAT_VOC, annotation_files=annotation_files)
        return header, files, root, []
    try:
        read = read_annotations(annotations, images)
    except DatasetValidationError:
        if detect_format(annotations) != "coco":
            raise  # a Label Studio or CVAT export: converted here, so its problems are named here
        read = None  # COCO the server will judge, with every problem named
    content = annotations.read_bytes()
    root = read.image_root if read else images or annotations.parent
    file_name = annotations.name
    if read is not None and read.renamed:
        content, file_name = json.dumps(read.coco).encode("utf-8"), f"{annotations.stem}.json"
    names = [str(image.get("file_name", "")).replace("\\", "/") for image in read.coco.get("images", [])
             if isinstance(image, dict)] if read is not None and isinstance(read.coco, dict) else []
    files = [item for name in names for item in _referenced(root, name)]
    header = pb.DatasetHeader(name=name, format=pb.DATASET_FORMAT_COCO, annotation_files=[
        pb.AnnotationFile(file_name=file_name, content=content)])
    return header, files, root, read.notes if read else []


def check_local_images(annotations: Path, images: Path | None) -> list[str]:
    """FileNotFoundError naming the referenced images missing under the image root, before any byte is sent;
    else the notes of the conversion (what it left out)."""
    _, files, root, notes = _upload_plan("check", annotations, images)
    missing = sorted({n for n, p in files if not p.is_file()})
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FileNotFoundError(f"{len(missing)} of {len(dict(files))} images that {annotations.name} references "
                                f"are not under {root}: {shown} (is --images the folder their file_name is "
                                "relative to?)")
    return notes


def upload_requests(name: str, annotations: Path, images: Path | None,
                    progress: bool = True) -> Iterator[pb.UploadDatasetRequest]:
    """Header, then every referenced image in 1 MiB chunks; the last chunk of a file carries its sha256. A zip is
    unpacked into a scratch folder while it is sent."""
    with opened(annotations, images) as (annotations, images):
        yield from _requests(name, annotations, images, progress)


def _requests(name: str, annotations: Path, images: Path | None, progress: bool) -> Iterator[pb.UploadDatasetRequest]:
    header, files, _, _ = _upload_plan(name, annotations, images)
    yield pb.UploadDatasetRequest(header=header)
    present = [(n, p) for n, p in dict(files).items() if p.is_file()]  # missing ones: the server lists them
    total = sum(p.stat().st_size for _, p in present)
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"push {name}", disable=not progress) as bar:
        for file_name, path in present:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                data = handle.read(CHUNK_BYTES)
                while True:
                    following = handle.read(CHUNK_BYTES)
                    digest.update(data)
                    yield pb.UploadDatasetRequest(chunk=pb.ImageChunk(
                        file_name=file_name, data=data, sha256="" if following else digest.hexdigest()))
                    bar.update(len(data))
                    if not following:
                        break
                    data = following


def push_dataset(connection: Connection, name: str, annotations: Path, images: Path | None = None,
                 progress: bool = True, timeout: float | None = None) -> pb.Dataset:
    return connection.datasets().UploadDataset(upload_requests(name, annotations, images, progress),
                                               metadata=connection.metadata, timeout=timeout)


# -- jobs -----------------------------------------------------------------------------------------

def training_parameters_of(values: dict, augment: bool | None = None) -> pb.TrainingParameters:
    """TrainConfig option values (flags, or a finished job's config) as TrainingParameters: the proto's typed
    fields where it has one, `extra` otherwise; options the server owns (files, device) are left out."""
    from artdet.detector.config import TRAIN_SCHEMA
    from artdet.detector.errors import InvalidArgument

    typed = {f.name for f in pb.TrainingParameters.DESCRIPTOR.fields} - {"augment", "extra"}
    params = pb.TrainingParameters()
    for spec in TRAIN_SCHEMA.values():
        value = values.get(spec.name)
        if value is None or spec.server_owned:
            continue
        if spec.name in typed:
            try:
                setattr(params, spec.name, value)
            except (TypeError, ValueError):  # beyond the proto's int32: the server would refuse it anyway
                raise InvalidArgument(f"{spec.name}: {value} is not in {spec.interval()}") from None
        else:
            params.extra[spec.name] = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    if augment is not None:
        params.augment = augment
    return params


def watch_job(connection: Connection, job_id: str, progress: bool = True, out=sys.stderr) -> pb.Job:
    """Follow a job's events as `artdet train` shows them (progress bars unless `progress` is False, one line
    per other event); returns the job once it ended."""
    display = ProgressDisplay(out, bars=progress)
    try:
        for message in connection.training().WatchJob(pb.WatchJobRequest(id=job_id), metadata=connection.metadata):
            display.show(json.loads(message.payload_json))
    finally:
        display.close()
    return connection.training().GetJob(pb.GetJobRequest(id=job_id), metadata=connection.metadata)
