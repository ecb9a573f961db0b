"""Malformed uploads are the client's fault: INVALID_ARGUMENT (or CANCELLED) naming the field or file, never INTERNAL.

Most cases call DatasetServicer.UploadDataset directly with a fake context (fast); one test sends a batch of
them to a real server process.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time

import grpc
import pytest
from PIL import Image

from artdet.v1 import artdet_pb2 as pb
from artdet.server.dataset_service import DatasetServicer
from artdet.server.store import Store


def _png(size=(8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()
VALID_COCO = {
    "categories": [{"id": 1, "name": "cat"}],
    "images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 6}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 3]}],
}


def _voc_xml(file_name: str = "a.png", width: str = "8", height: str = "6", extra: str = "") -> bytes:
    return (f"<annotation><filename>{file_name}</filename><size><width>{width}</width><height>{height}</height>"
            f"</size><object><name>cat</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>5</xmax><ymax>4</ymax>"
            f"</bndbox>{extra}</object></annotation>").encode()


def coco_header(coco, name: str = "ds") -> pb.UploadDatasetRequest:
    content = coco if isinstance(coco, bytes) else json.dumps(coco).encode()
    return pb.UploadDatasetRequest(header=pb.DatasetHeader(
        name=name, format=pb.DATASET_FORMAT_COCO,
        annotation_files=[pb.AnnotationFile(file_name="annotations.json", content=content)]))


def voc_header(files: list[tuple[str, bytes]], name: str = "ds") -> pb.UploadDatasetRequest:
    return pb.UploadDatasetRequest(header=pb.DatasetHeader(
        name=name, format=pb.DATASET_FORMAT_VOC,
        annotation_files=[pb.AnnotationFile(file_name=n, content=c) for n, c in files]))


def chunk(file_name: str, data: bytes = PNG, last: bool = True) -> pb.UploadDatasetRequest:
    return pb.UploadDatasetRequest(chunk=pb.ImageChunk(
        file_name=file_name, data=data, sha256=hashlib.sha256(data).hexdigest() if last else ""))


class Aborted(Exception):
    pass


class FakeContext:
    """The parts of grpc.ServicerContext the servicer and server/errors.py use."""

    def __init__(self, active: bool = True):
        self.active = active
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def is_active(self) -> bool:
        return self.active

    def abort(self, code, details):
        self.code, self.details = code, details
        raise Exception()  # what grpc raises after recording the status


@pytest.fixture
def servicer(tmp_path):
    return DatasetServicer(Store(tmp_path / "data"), max_upload_bytes=1 << 20, max_image_pixels=10_000)


def upload(servicer, requests, context: FakeContext | None = None):
    """(code, details) of the call; code is OK and details the reply when it succeeded."""
    context = context or FakeContext()
    try:
        reply = servicer.UploadDataset(iter(requests), context)
    except Exception:  # noqa: BLE001 - the fake abort
        assert context.code is not None, "the servicer raised without setting a status"
        return context.code, context.details
    return grpc.StatusCode.OK, reply


def assert_invalid(servicer, requests, *words: str):
    code, details = upload(servicer, requests)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    for word in words:
        assert word in details, (word, details)
    root = str(servicer.store.root)
    assert root not in details and "upload-" not in details, details  # never the staging folder
    assert list((servicer.store.root / "tmp").iterdir()) == []
    return details


def test_a_valid_upload_still_works(servicer):
    code, reply = upload(servicer, [coco_header(VALID_COCO), chunk("a.png")])
    assert code == grpc.StatusCode.OK, reply
    assert reply.statistics.images == 1 and reply.statistics.boxes == 1
    voc = [voc_header([("x/a.xml", _voc_xml())], name="voc"), chunk("a.png")]
    code, reply = upload(servicer, voc)
    assert code == grpc.StatusCode.OK, reply
    assert reply.statistics.boxes == 1


@pytest.mark.parametrize("names", [
    ["a" * 300 + ".png"],
    ["d" * 300 + "/a.png"],
    ["/".join(["d" * 200] * 30) + "/a.png"],
    ["a\x00b.png"],
    ["a.png", "a.png/b.png"],
    ["d.x/b.png", "d.x"],
    ["d.x/b.png", "d.x/b.png/c.png"],
    ["a.png", "./a.png"],
    ["."],
    [""],
], ids=["long-name", "long-part", "long-path", "nul", "file-then-folder", "folder-then-file", "deep-clash",
        "same-file-twice", "dot", "empty"])
def test_bad_chunk_file_names(servicer, names):
    requests = [coco_header(VALID_COCO)] + [chunk(n) for n in names]
    assert_invalid(servicer, requests, "chunk.file_name")


def test_a_message_without_a_part(servicer):
    assert_invalid(servicer, [coco_header(VALID_COCO), pb.UploadDatasetRequest()], "chunk")


BAD_JSON = {
    "list": b"[]",
    "null": b"null",
    "inf": b"1e999",
    "string": b'"x"',
    "deep-list": b"[" * 100_000 + b"]" * 100_000,
    "deep-object": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "huge-int": b'{"images": [], "categories": [{"id": 1' + b"0" * 5000 + b', "name": "x"}]}',
    "not-utf8": b"\xff\xfe{}",
}


@pytest.mark.parametrize("content", BAD_JSON.values(), ids=BAD_JSON.keys())
def test_bad_annotation_json(servicer, content):
    assert_invalid(servicer, [coco_header(content), chunk("a.png")], "header.annotation_files[0]")


def _mutated(path: tuple, value):
    coco = json.loads(json.dumps(VALID_COCO))
    target = coco
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return coco


WRONG_TYPES = {
    "images-5": (("images",), 5, "images"),
    "images-null": (("images",), None, "images"),
    "images-dict": (("images",), {"id": 1}, "images"),
    "annotations-5": (("annotations",), 5, "annotations"),
    "categories-str": (("categories",), "cat", "categories"),
    "image-id-list": (("images", 0, "id"), [1], "image #0"),
    "image-id-dict": (("images", 0, "id"), {"a": 1}, "image #0"),
    "image-id-bool": (("images", 0, "id"), True, "image #0"),
    "image-entry-list": (("images", 0), [1, 2], "image #0"),
    "file-name-list": (("images", 0, "file_name"), ["a.png"], "file_name"),
    "file-name-long": (("images", 0, "file_name"), "a" * 300 + ".png", "file_name"),
    "file-name-nul": (("images", 0, "file_name"), "a\x00.png", "file_name"),
    "width-list": (("images", 0, "width"), [8], "width"),
    "height-dict": (("images", 0, "height"), {"h": 6}, "height"),
    "width-bool": (("images", 0, "width"), True, "width"),
    "ann-id-list": (("annotations", 0, "id"), [1], "annotation #0"),
    "ann-image-id-list": (("annotations", 0, "image_id"), [1], "image_id"),
    "ann-image-id-dict": (("annotations", 0, "image_id"), {"id": 1}, "image_id"),
    "ann-image-id-true": (("annotations", 0, "image_id"), True, "image_id"),
    "ann-category-id-list": (("annotations", 0, "category_id"), [1], "category_id"),
    "ann-category-id-true": (("annotations", 0, "category_id"), True, "category_id"),
    "bbox-entry-list": (("annotations", 0, "bbox"), [[1], 1, 4, 3], "bbox"),
    "bbox-entry-dict": (("annotations", 0, "bbox"), [1, {"x": 1}, 4, 3], "bbox"),
    "bbox-entry-bool": (("annotations", 0, "bbox"), [1, True, 4, 3], "bbox"),
    "bbox-huge-int": (("annotations", 0, "bbox"), [1, 10 ** 400, 4, 3], "bbox"),
    "bbox-dict": (("annotations", 0, "bbox"), {"x": 1}, "bbox"),
    "iscrowd-list": (("annotations", 0, "iscrowd"), [0], "iscrowd"),
    "category-id-list": (("categories", 0, "id"), [1], "category #0"),
    "category-name-list": (("categories", 0, "name"), ["cat"], "category 1"),
}


@pytest.mark.parametrize("path, value, where", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_fields_of_the_wrong_type(servicer, path, value, where):
    assert_invalid(servicer, [coco_header(_mutated(path, value)), chunk("a.png")], where)


def test_every_wrong_type_is_reported_at_once(servicer):
    coco = _mutated(("annotations", 0, "image_id"), True)
    coco["images"].append({"id": [2], "file_name": "b.png"})
    coco["annotations"].append({"id": 2, "image_id": 1, "category_id": {"x": 1}, "bbox": [1, 1, 1, 1]})
    coco["categories"].append({"id": 2, "name": 7})
    details = assert_invalid(servicer, [coco_header(coco), chunk("a.png")])
    for where in ("annotation 1: ", "image #1: ", "annotation 2: ", "category 2: "):
        assert where in details, (where, details)


class _NoChunks:
    """A request stream whose chunks must not be read: the header alone is refused."""

    def __init__(self, header):
        self.items = [header]

    def __iter__(self):
        return self

    def __next__(self):
        if not self.items:
            raise AssertionError("a chunk was read although the annotations were already known to be broken")
        return self.items.pop()


@pytest.mark.parametrize("header", [
    coco_header(b"{"),
    coco_header(_mutated(("annotations", 0, "bbox"), [1, 1, -5, 3])),
    coco_header(_mutated(("annotations", 0, "category_id"), 99)),
    coco_header(_mutated(("images", 0, "file_name"), "../escape.png")),
    voc_header([("a.xml", b"<annotation><filename>")]),
    voc_header([("a.xml", _voc_xml(width="inf"))]),
], ids=["json", "bbox", "category", "escape", "voc-xml", "voc-width"])
def test_broken_annotations_are_refused_before_any_image(servicer, header):
    code, details = upload(servicer, _NoChunks(header))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert "header" in details or "annotation" in details, details


VOC_CASES = {
    "width-inf": ([("a.xml", _voc_xml(width="inf"))], "a.xml"),
    "height-nan": ([("a.xml", _voc_xml(height="nan"))], "a.xml"),
    "width-huge": ([("a.xml", _voc_xml(width="1e999"))], "a.xml"),
    "difficult-text": ([("a.xml", _voc_xml(extra="<difficult>maybe</difficult>"))], "a.xml"),
    "empty-name": ([("", _voc_xml())], "header.annotation_files[0]"),
    "file-then-folder": ([("a.xml", _voc_xml()), ("a.xml/b.xml", _voc_xml("b.png"))], "header.annotation_files[1]"),
    "same-name-twice": ([("a.xml", _voc_xml()), ("a.xml", _voc_xml("b.png"))], "header.annotation_files[1]"),
    "long-name": ([("a" * 300 + ".xml", _voc_xml())], "header.annotation_files[0]"),
    "nul-name": ([("a\x00.xml", _voc_xml())], "header.annotation_files[0]"),
    "escape-name": ([("../a.xml", _voc_xml())], "header.annotation_files[0]"),
    "image-named-twice": ([("a.xml", _voc_xml()), ("b.xml", _voc_xml())], "a.png"),
    "bad-file-name": ([("a.xml", _voc_xml("../x.png"))], "relative path inside"),
    "no-size-numbers": ([("a.xml", _voc_xml(width="wide"))], "a.xml"),
}


@pytest.mark.parametrize("files, word", VOC_CASES.values(), ids=VOC_CASES.keys())
def test_bad_voc_uploads(servicer, files, word):
    assert_invalid(servicer, [voc_header(files), chunk("a.png")], word)


def test_duplicate_voc_image_names_name_both_files(servicer):
    details = assert_invalid(servicer, [voc_header([("a.xml", _voc_xml()), ("b.xml", _voc_xml())]), chunk("a.png")])
    assert "a.xml" in details and "b.xml" in details, details


# -- cancellation -----------------------------------------------------------------------------------


def _cancelled_stream(context: FakeContext, requests, error: Exception | None):
    """Yields `requests`, then the client goes away: the context turns inactive and the stream raises `error`
    (grpc raises an RpcError) or simply ends (the race where grpc sees a half-close first)."""
    yield from requests
    context.active = False
    if error is not None:
        raise error


@pytest.mark.parametrize("error", [grpc.RpcError(), None], ids=["rpc-error", "stream-ends"])
@pytest.mark.parametrize("cut", ["between-files", "mid-file"])
def test_a_cancelled_upload_is_cancelled_not_a_crash(servicer, caplog, error, cut):
    context = FakeContext()
    sent = [coco_header(VALID_COCO), chunk("a.png", PNG[:10], last=cut == "between-files")]
    with caplog.at_level(logging.INFO, logger="artdet.server"):
        code, details = upload(servicer, _cancelled_stream(context, sent, error), context)
    assert code == grpc.StatusCode.CANCELLED, (code, details)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert list((servicer.store.root / "tmp").iterdir()) == []


def test_a_cancel_after_the_last_chunk_is_cancelled(servicer, caplog):
    context = FakeContext()

    def stream():
        yield coco_header(VALID_COCO)
        yield chunk("a.png")
        context.active = False

    with caplog.at_level(logging.INFO, logger="artdet.server"):
        code, _ = upload(servicer, stream(), context)
    assert code == grpc.StatusCode.CANCELLED
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert servicer.store.list_datasets("") == []


# -- against a real server --------------------------------------------------------------------------


def test_malformed_uploads_against_a_real_server(tmp_path):
    from tests.conftest import ServerProcess

    server = ServerProcess(tmp_path / "data").start()
    try:
        annotator = server.connect("annotator")
        stub = annotator.datasets()
        malformed = {
            "long chunk name": [coco_header(VALID_COCO), chunk("a" * 300 + ".png")],
            "file then folder": [coco_header(VALID_COCO), chunk("a.png"), chunk("a.png/b.png")],
            "folder then file": [coco_header(VALID_COCO), chunk("d.x/b.png"), chunk("d.x")],
            "json list": [coco_header(b"[]"), chunk("a.png")],
            "json null": [coco_header(b"null"), chunk("a.png")],
            "json inf": [coco_header(b"1e999"), chunk("a.png")],
            "deep json": [coco_header(b"[" * 100_000 + b"]" * 100_000), chunk("a.png")],
            "images 5": [coco_header(_mutated(("images",), 5)), chunk("a.png")],
            "list id": [coco_header(_mutated(("annotations", 0, "image_id"), [1])), chunk("a.png")],
            "true id": [coco_header(_mutated(("annotations", 0, "image_id"), True)), chunk("a.png")],
            "voc inf": [voc_header([("a.xml", _voc_xml(width="inf"))]), chunk("a.png")],
            "voc empty name": [voc_header([("", _voc_xml())]), chunk("a.png")],
            "voc clash": [voc_header([("a.xml", _voc_xml()), ("a.xml/b.xml", _voc_xml("b.png"))]), chunk("a.png")],
        }
        codes = {}
        for what, requests in malformed.items():
            try:
                reply = stub.UploadDataset(iter(requests), metadata=annotator.metadata, timeout=60)
                codes[what] = (grpc.StatusCode.OK, str(reply))
            except grpc.RpcError as error:
                codes[what] = (error.code(), error.details())
        wrong = {what: c for what, c in codes.items() if c[0] != grpc.StatusCode.INVALID_ARGUMENT}
        assert not wrong, wrong
        assert all(str(server.data_dir) not in details for _, details in codes.values())
        # a client that cancels halfway: CANCELLED on the server's side, no crash in its log
        sent_first_bytes, release = threading.Event(), threading.Event()
        call = stub.UploadDataset.future(_stalled_upload(sent_first_bytes, release), metadata=annotator.metadata)
        staging = server.data_dir / "tmp"
        assert sent_first_bytes.wait(30)
        assert _within(30, lambda: any(staging.glob("upload-*/images/a.png")))  # the server is writing a.png
        call.cancel()
        release.set()
        assert call.cancelled()
        assert stub.UploadDataset(iter([coco_header(VALID_COCO), chunk("a.png")]), metadata=annotator.metadata,
                                  timeout=60).statistics.images == 1
    finally:
        server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log and "internal error" not in log and " failed" not in log, log[-3000:]


def _stalled_upload(sent_first_bytes: threading.Event, release: threading.Event):
    """Header and the first bytes of a.png, then nothing until the test has cancelled the call."""
    yield coco_header(VALID_COCO)
    yield chunk("a.png", PNG[:10], last=False)
    sent_first_bytes.set()
    release.wait(60)
    yield chunk("a.png", PNG[10:])


def _within(seconds: float, condition) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False