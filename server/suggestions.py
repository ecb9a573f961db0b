"""SuggestImages: the pool's images through the active model, ranked by how much labelling each should help.

Each pool image is analysed as it arrives and only its summary is kept (boxes, two numbers, one embedding),
so memory grows with the pool's count, never with its bytes; the count is capped.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from artdet.v1 import artdet_pb2 as pb
from artdet.detector.dataset import NameTree, file_name_problem, normalize_file_name
from artdet.detector.errors import (Cancelled, DeadlineExceeded, FailedPrecondition, InvalidArgument,
                                   PermissionDenied, ResourceExhausted, redact_paths)
from artdet.detector.images import ImageDecodeError
from artdet.detector.suggest import PoolImage, analyse, embed, rank
from artdet.server.model_repository import ModelRepository

MAX_BUDGET = 1000
MAX_POOL_IMAGES = 5_000
MAX_LABELLED_IMAGES = 5_000
MAX_NOTED_SKIPS = 20
MAX_SECONDS = 1800  # a call holds the one SuggestImages slot: a pool that trickles in cannot hold it for ever
DATASET_ROLES = {"annotator", "operator", "admin"}  # who may name a stored dataset (clients may not read them)
# (dataset name, version) -> its images as (file name, path); the full server's datasets, None on a replica
StoredImages = Callable[[str, int], list[tuple[str, Path]]]


def _header(first: pb.SuggestImagesRequest | None) -> pb.SuggestHeader:
    if first is None or first.WhichOneof("part") != "header":
        raise InvalidArgument("header: the first message must be the header")
    header = first.header
    if not 1 <= header.budget <= MAX_BUDGET:
        raise InvalidArgument(f"header.budget: must be 1..{MAX_BUDGET}, got {header.budget}")
    if header.strategy not in pb.SuggestStrategy.values():
        raise InvalidArgument(f"header.strategy: unknown value {header.strategy}")
    for field in ("labelled_version", "pool_version", "model_version"):
        if getattr(header, field) < 0:
            raise InvalidArgument(f"header.{field}: must be 0 (the latest) or a version number")
    return header


def _stored(stored_images: StoredImages | None, field: str, name: str, version: int,
            limit: int) -> list[tuple[str, Path]]:
    if stored_images is None:
        raise FailedPrecondition(f"header.{field}: stored datasets are on the full server (artdet serve "
                                 "--data-dir), not on a detect-only replica")
    images = stored_images(name, version)
    if len(images) > limit:
        raise ResourceExhausted(f"header.{field}: {name} has {len(images)} images; at most {limit}")
    return images


def _pool(header: pb.SuggestHeader, messages: Iterator[pb.SuggestImagesRequest],
          stored_images: StoredImages | None) -> Iterable[tuple[str, bytes]]:
    if header.pool_dataset:
        images = _stored(stored_images, "pool_dataset", header.pool_dataset, header.pool_version, MAX_POOL_IMAGES)
        if next(messages, None) is not None:
            raise InvalidArgument("image: no pool images may follow a header that names pool_dataset")
        for file_name, path in images:
            yield file_name, path.read_bytes()  # as bytes: messages then name the image, not where it is stored
        return
    names = NameTree()
    for index, message in enumerate(messages, start=1):
        if message.WhichOneof("part") != "image":
            raise InvalidArgument(f"message {index}: only pool images may follow the header")
        if index > MAX_POOL_IMAGES:
            raise ResourceExhausted(f"pool: more than {MAX_POOL_IMAGES} images; suggest from a part at a time")
        name = message.image.file_name
        problem = file_name_problem(name) or names.add(normalize_file_name(name))
        if problem:
            raise InvalidArgument(f"image {index}.file_name: {problem}")
        yield normalize_file_name(name), message.image.image


# one at a time: a call runs the model on every pool image, and Detect calls share the model's runs
_RUNNING = threading.Lock()


def suggest(repository: ModelRepository, requests: Iterator[pb.SuggestImagesRequest],
            stored_images: StoredImages | None, roles: set[str], context) -> pb.SuggestImagesResponse:
    header = _header(next(requests, None))
    if (header.pool_dataset or header.labelled_dataset) and not roles & DATASET_ROLES:
        field = "pool_dataset" if header.pool_dataset else "labelled_dataset"
        raise PermissionDenied(f"header.{field}: reading a stored dataset needs the annotator or operator role")
    model = repository.resolve(header.model_name, header.model_version)
    diversity = header.strategy != pb.SUGGEST_STRATEGY_UNCERTAINTY
    if not _RUNNING.acquire(blocking=False):
        raise ResourceExhausted("another SuggestImages call is running; try again when it has finished")
    try:
        labelled = None
        if header.labelled_dataset and diversity and model.detector.has_embedding:
            vectors = []
            for name, path in _stored(stored_images, "labelled_dataset", header.labelled_dataset,
                                      header.labelled_version, MAX_LABELLED_IMAGES):
                _check_active(context)
                try:
                    vectors.append(embed(model.detector, path.read_bytes(), name))
                except ImageDecodeError:
                    continue  # a labelled image the gate refuses cannot be near anything
            labelled = np.stack(vectors) if vectors else None
        pool: list[PoolImage] = []
        skipped: list[str] = []
        deadline = time.monotonic() + MAX_SECONDS
        for file_name, image in _pool(header, requests, stored_images):
            _check_active(context)
            if time.monotonic() > deadline:
                raise DeadlineExceeded(f"pool: not analysed within {MAX_SECONDS} s; suggest from a part at a time")
            try:
                pool.append(analyse(model.detector, image, file_name))
            except ImageDecodeError as exc:
                skipped.append(redact_paths(str(exc)))
    finally:
        _RUNNING.release()
    if not pool:
        raise InvalidArgument("pool: no readable image" + (f" ({skipped[0]})" if skipped else ""))
    chosen, notes = rank(pool, header.budget, diversity, labelled)
    notes += [f"skipped: {reason}" for reason in skipped[:MAX_NOTED_SKIPS]]
    if len(skipped) > MAX_NOTED_SKIPS:
        notes.append(f"skipped {len(skipped) - MAX_NOTED_SKIPS} more unreadable images")
    response = pb.SuggestImagesResponse(model_name=model.name, model_version=model.version,
                                        pool_images=len(pool), notes=notes)
    for suggestion in chosen:
        image = suggestion.image
        width, height = image.result.width, image.result.height
        entry = response.suggestions.add(
            file_name=image.file_name, rank=suggestion.rank, score=image.score, uncertainty=image.uncertainty,
            disagreement=image.disagreement, novelty=-1.0 if suggestion.novelty is None else suggestion.novelty,
            reasons=suggestion.reasons, width=width, height=height)
        for det in image.result.detections:
            x1, y1, x2, y2 = det.box
            entry.detections.add(box=pb.Box(x1=x1, y1=y1, x2=x2, y2=y2),
                                 box_normalized=pb.Box(x1=x1 / width, y1=y1 / height, x2=x2 / width, y2=y2 / height),
                                 score=det.score, label=det.label, label_id=det.label_id,
                                 description=model.descriptions.get(det.label, ""))
    return response


def _check_active(context) -> None:
    if context is not None and not context.is_active():
        raise Cancelled("the client went away")


def stored_images_of(store, dataset_images) -> StoredImages:
    """The full server's StoredImages: a dataset version's images, by the names they were uploaded under."""
    def images(name: str, version: int) -> list[tuple[str, Path]]:
        dataset = dataset_images.dataset(store.get_dataset(name, version))
        return [(record.file_name, record.path) for record in dataset.images]
    return images

