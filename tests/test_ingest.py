"""Ingest of an uploaded dataset (server/ingest.py) without gRPC: publication, reuse, and nothing left behind."""

from __future__ import annotations

import hashlib
import json

import pytest

from artdet.v1 import artdet_pb2 as pb
from artdet.detector.errors import Cancelled, InvalidArgument
from artdet.server.ingest import ingest_dataset
from artdet.server.store import Store
from artdet.tools.bench.fuzz import png_of_zeros

IMAGES = {"a.png": png_of_zeros(80, 60), "sub/b.png": png_of_zeros(40, 30, colour=2)}
COCO = {
    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    "images": [{"id": 1, "file_name": "a.png", "width": 80, "height": 60},
               {"id": 2, "file_name": "sub/b.png", "width": 40, "height": 30}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 20, 10]}],
}
ANNOTATIONS = json.dumps(COCO).encode()


def header(name: str = "paintings") -> pb.DatasetHeader:
    return pb.DatasetHeader(name=name, format=pb.DATASET_FORMAT_COCO,
                            annotation_files=[pb.AnnotationFile(file_name="annotations.json", content=ANNOTATIONS)])


def chunks(images: dict[str, bytes]) -> list[pb.ImageChunk]:
    """Each file in two chunks; the second carries the file's sha256."""
    sent = []
    for name, data in images.items():
        half = len(data) // 2
        sent += [pb.ImageChunk(file_name=name, data=data[:half]),
                 pb.ImageChunk(file_name=name, data=data[half:], sha256=hashlib.sha256(data).hexdigest())]
    return sent


def ingest(store: Store, images: dict[str, bytes] = IMAGES, **options):
    return ingest_dataset(store, header(), iter(chunks(images)), max_bytes=1 << 20, max_image_pixels=10_000,
                          **options)


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "data")


def staging_left(store: Store) -> list:
    return list((store.root / "tmp").iterdir())


def test_a_good_upload_is_published_with_its_statistics_and_content_hash(store):
    row, reused = ingest(store)
    assert not reused and (row.name, row.version) == ("paintings", 1)
    assert row.statistics == {"images": 2, "boxes": 1, "negative_images": 1, "boxes_per_class": {"cat": 1, "dog": 0},
                              "min_width": 40, "max_width": 80, "min_height": 30, "max_height": 60,
                              "bytes": sum(len(data) for data in IMAGES.values())}
    content = hashlib.sha256(ANNOTATIONS)
    for name in sorted(IMAGES):
        content.update(f"\n{name}\t{hashlib.sha256(IMAGES[name]).hexdigest()}".encode())
    assert row.sha256 == content.hexdigest()
    assert (row.path / "annotations.json").read_bytes() == ANNOTATIONS
    assert {name: (row.path / "images" / name).read_bytes() for name in IMAGES} == IMAGES
    assert store.get_dataset("paintings") == row
    assert staging_left(store) == []


def test_the_same_content_again_is_reused_and_new_content_is_a_new_version(store):
    first, _ = ingest(store)
    again, reused = ingest(store)
    assert reused and again == first
    assert staging_left(store) == []
    changed, reused = ingest(store, {**IMAGES, "a.png": png_of_zeros(80, 60, colour=2)})
    assert not reused and changed.version == 2 and changed.sha256 != first.sha256
    assert [d.version for d in store.list_datasets("paintings")] == [1, 2]


def _failing_stream(error: Exception):
    yield from chunks({"a.png": IMAGES["a.png"]})
    raise error


@pytest.mark.parametrize("stream, error, words", [
    (lambda: iter([pb.ImageChunk(file_name="a.png", data=b"abc", sha256="0" * 64)]), InvalidArgument, "chunk.sha256"),
    (lambda: iter(chunks(IMAGES)[:3]), InvalidArgument, "ended in the middle of 'sub/b.png'"),
    (lambda: _failing_stream(InvalidArgument("message 3: not a chunk")), InvalidArgument, "message 3"),
])
def test_a_bad_chunk_publishes_nothing_and_leaves_no_staging_folder(store, stream, error, words):
    with pytest.raises(error, match=words):
        ingest_dataset(store, header(), stream(), max_bytes=1 << 20, max_image_pixels=10_000)
    assert staging_left(store) == []
    assert store.list_datasets() == []


def test_an_upload_whose_client_left_is_not_published(store):
    with pytest.raises(Cancelled, match="cancelled by the client"):
        ingest(store, is_active=lambda: False)
    assert staging_left(store) == [] and store.list_datasets() == []
