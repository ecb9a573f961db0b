"""A seeded request fuzzer for every RPC of the four artdet services.

`generate_cases(rng, count, targets)` yields `Case`s (method, case name, what to send); `run_cases` sends them
to a server with deadlines and records each answer's status code. Nothing here knows how the server works:
an answer is judged only by its code (INTERNAL / UNKNOWN = a server bug, a deadline = a hang, the process gone
= a death). Used by `artdet bench --reliability` and tests/test_fuzz.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import grpc

from artdet.v1 import artdet_pb2 as pb

SERVICES = tuple(pb.DESCRIPTOR.services_by_name)  # every artdet.v1 service
BUG_CODES = ("INTERNAL", "UNKNOWN")
DEADLINE_S = 10.0
MAX_STREAM_MESSAGES = 200  # a server-streaming answer longer than this is cut off (WatchJob of a live job)


def methods() -> list[tuple[str, str, bool, bool]]:
    """(service full name, method, request streaming, response streaming) for every RPC of every service."""
    found = []
    for service in SERVICES:
        descriptor = pb.DESCRIPTOR.services_by_name[service]
        for method in descriptor.methods:
            found.append((descriptor.full_name, method.name, method.client_streaming, method.server_streaming))
    return found


def request_class(service: str, method: str):
    descriptor = pb.DESCRIPTOR.services_by_name[service.split(".")[-1]].methods_by_name[method]
    return getattr(pb, descriptor.input_type.name)


@dataclass
class Targets:
    """Real names on the server under test, so mutated requests reach past the 'not found' checks."""

    dataset_name: str = "shapes"
    dataset_version: int = 1
    model_name: str = "shapes"
    model_version: int = 1
    job_id: str = ""
    class_names: list[str] = field(default_factory=lambda: ["circle", "square"])


@dataclass
class Case:
    service: str
    method: str
    case: str
    payload: Any  # a message, a list of messages (request stream), or raw bytes / list of raw bytes
    raw: bool = False
    request_streaming: bool = False
    response_streaming: bool = False
    metadata: tuple = ()  # extra gRPC metadata sent with the caller's
    replace_auth: bool = False  # send `metadata` instead of the caller's authorization

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"


@dataclass
class Outcome:
    method: str
    case: str
    code: str
    message: str
    seconds: float
    messages: int = 0
    hang: bool = False


# -- images ----------------------------------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int, depth: int = 8, colour: int = 2) -> bytes:
    """A tiny, well-formed PNG whose header declares width x height (the 'decompression bomb' header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00"))
            + _png_chunk(b"IEND", b""))


def png_of_zeros(width: int, height: int, colour: int = 0) -> bytes:
    """A complete, valid 8-bit PNG of zeros (grey: colour 0, RGB: 2), compressed row by row: a few hundred KB
    for hundreds of megapixels, and never the whole image in memory."""
    channels = {0: 1, 2: 3}[colour]
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width * channels + 1)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """SOI, a baseline SOF0 declaring width x height with 3 components, then EOI: no scan data at all."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


def webp_claiming(width: int, height: int) -> bytes:
    """A VP8X WebP header with a canvas of width x height and nothing else."""
    vp8x = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def gif_claiming(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + b";"


def bmp_claiming(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def encode(image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


class ImageFactory:
    """Valid base images (built once) and the mutations applied to them."""

    def __init__(self, seed: int = 0, huge_side: int = 6000):
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(seed)
        self.Image = Image
        noise = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
        base = Image.fromarray(noise).resize((320, 240), Image.BICUBIC)
        self.small_jpeg = encode(base, "JPEG", quality=85)
        self.small_png = encode(base, "PNG")
        self.small_webp = encode(base, "WEBP")
        self.huge_side = huge_side
        self._huge: dict[str, bytes] = {}
        exif = Image.Exif()
        exif[0x0112] = 6  # rotated 90 degrees
        self.rotated_jpeg = encode(base, "JPEG", exif=exif.tobytes())
        exif[0x0112] = 9  # not a valid orientation
        self.bad_orientation_jpeg = encode(base, "JPEG", exif=exif.tobytes())
        self.variants = {
            "gray_png": encode(base.convert("L"), "PNG"),
            "la_png": encode(base.convert("LA"), "PNG"),
            "rgba_png": encode(base.convert("RGBA"), "PNG"),
            "palette_png": encode(base.convert("P"), "PNG", transparency=0),
            "cmyk_jpeg": encode(base.convert("CMYK"), "JPEG"),
            "png_16bit": encode(Image.fromarray(rng.integers(0, 65535, (60, 80), dtype=np.uint16)), "PNG"),
            "one_pixel_png": encode(Image.new("RGB", (1, 1)), "PNG"),
            "wide_1px_png": encode(Image.new("RGB", (30000, 1)), "PNG"),
            "tall_1px_png": encode(Image.new("RGB", (1, 30000)), "PNG"),
            "gif": encode(base.convert("P"), "GIF"),
            "bmp": encode(base, "BMP"),
            "tiff": encode(base, "TIFF"),
            "progressive_jpeg": encode(base, "JPEG", progressive=True),
            "rotated_exif_jpeg": self.rotated_jpeg,
            "bad_exif_orientation_jpeg": self.bad_orientation_jpeg,
            "webp": self.small_webp,
        }

    def huge_legal(self, fmt: str) -> bytes:
        """A huge_side x huge_side image (36 MP by default: under the 40 MP limit) that compresses to little."""
        if fmt not in self._huge:
            image = self.Image.new("RGB", (self.huge_side, self.huge_side), (90, 120, 150))
            self._huge[fmt] = encode(image, fmt, **({"quality": 50} if fmt == "JPEG" else {}))
        return self._huge[fmt]

    KINDS = ("valid", "bitflip", "bitflip_many", "truncate", "truncate_header", "png_huge_header",
             "png_huge_header_16bit", "jpeg_huge_header", "webp_huge_header", "gif_huge_header",
             "bmp_huge_header", "bmp_negative_size", "random_bytes", "empty", "zero_bytes",
             "variant", "huge_legal_png", "huge_legal_jpeg", "png_zero_size", "text", "svg",
             "jpeg_garbage_tail", "double_image", "pdf")

    def all_kinds(self) -> list[str]:
        return [k for k in self.KINDS if k != "variant"] + [f"variant_{v}" for v in sorted(self.variants)]

    def mutate(self, rng: random.Random, kind: str | None = None) -> tuple[str, bytes]:
        base = rng.choice((self.small_jpeg, self.small_png, self.small_webp))
        kind = kind or rng.choice(self.KINDS)
        if kind.startswith("variant_"):
            return kind, self.variants[kind.removeprefix("variant_")]
        if kind == "valid":
            return kind, base
        if kind in ("bitflip", "bitflip_many"):
            data = bytearray(base)
            for _ in range(1 if kind == "bitflip" else rng.randint(2, 200)):
                position = rng.randrange(len(data))
                data[position] ^= 1 << rng.randrange(8)
            return kind, bytes(data)
        if kind == "truncate":
            return kind, base[:rng.randrange(1, len(base))]
        if kind == "truncate_header":
            return kind, base[:rng.randrange(1, 40)]
        if kind == "png_huge_header":
            return kind, png_claiming(100_000, 100_000)
        if kind == "png_huge_header_16bit":
            return kind, png_claiming(rng.choice((65_535, 2**31 - 1)), rng.choice((65_535, 2**31 - 1)), 16, 6)
        if kind == "jpeg_huge_header":
            return kind, jpeg_claiming(65_500, 65_500)
        if kind == "webp_huge_header":
            return kind, webp_claiming(16_000_000, 16_000_000)
        if kind == "gif_huge_header":
            return kind, gif_claiming(65_535, 65_535)
        if kind == "bmp_huge_header":
            return kind, bmp_claiming(2**31 - 1, 2**31 - 1)
        if kind == "bmp_negative_size":
            return kind, bmp_claiming(-5, -2**31)
        if kind == "png_zero_size":
            return kind, png_claiming(0, 0)
        if kind == "random_bytes":
            return kind, rng.randbytes(rng.choice((1, 2, 16, 1000, 100_000)))
        if kind == "empty":
            return kind, b""
        if kind == "zero_bytes":
            return kind, bytes(rng.choice((1, 100, 10_000)))
        if kind == "variant":
            name = rng.choice(sorted(self.variants))
            return f"variant_{name}", self.variants[name]
        if kind == "huge_legal_png":
            return kind, self.huge_legal("PNG")
        if kind == "huge_legal_jpeg":
            return kind, self.huge_legal("JPEG")
        if kind == "text":
            return kind, b"hello, this is not an image"
        if kind == "svg":
            return kind, b'<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"/>'
        if kind == "pdf":
            return kind, b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF"
        if kind == "jpeg_garbage_tail":
            return kind, self.small_jpeg + rng.randbytes(5000)
        return kind, self.small_png + self.small_jpeg  # double_image


# -- annotations -----------------------------------------------------------------------------------

def valid_coco(file_names: list[str], classes: list[str], size: tuple[int, int] = (320, 240)) -> dict:
    return {
        "images": [{"id": i + 1, "file_name": n, "width": size[0], "height": size[1]}
                   for i, n in enumerate(file_names)],
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1 + i % len(classes),
                         "bbox": [10, 10, 50, 40], "area": 2000, "iscrowd": 0} for i in range(len(file_names))],
    }


COCO_KINDS = ("valid", "list_root", "null_root", "number_root", "string_root", "deep_nesting_list",
              "deep_nesting_dict", "inf_number", "nan", "huge_int", "images_dict", "images_null",
              "file_name_int", "file_name_null", "file_name_dotdot", "file_name_absolute", "bbox_string",
              "bbox_short", "bbox_negative", "bbox_inf", "bbox_nested", "category_id_float",
              "category_id_missing", "image_id_string", "width_string", "width_zero", "duplicate_ids",
              "categories_empty", "category_name_int", "not_utf8", "utf8_bom", "empty", "truncated",
              "annotations_null", "extra_huge_field", "unicode_names", "category_name_huge")


def mutate_coco(rng: random.Random, coco: dict, kind: str | None = None) -> tuple[str, bytes]:
    """(case, annotation file bytes): wrong types, deep nesting, [], null, 1e999 and friends."""
    doc = json.loads(json.dumps(coco))
    kind = kind or rng.choice(COCO_KINDS)
    ann, image, cat = doc["annotations"][0], doc["images"][0], doc["categories"][0]
    text = None
    if kind == "list_root":
        text = "[]"
    elif kind == "null_root":
        text = "null"
    elif kind == "number_root":
        text = "1e999"
    elif kind == "string_root":
        text = '"images"'
    elif kind == "deep_nesting_list":
        depth = rng.choice((1000, 100_000))
        text = "[" * depth + "]" * depth
    elif kind == "deep_nesting_dict":
        depth = rng.choice((1000, 50_000))
        text = '{"images":' + '{"a":' * depth + "1" + "}" * depth + "}"
    elif kind == "inf_number":
        text = json.dumps(doc).replace('"width": 320', '"width": 1e999', 1)
    elif kind == "nan":
        text = json.dumps(doc).replace('"area": 2000', '"area": NaN', 1).replace("[10, 10, 50, 40]",
                                                                                  "[NaN, 10, 50, 40]", 1)
    elif kind == "huge_int":
        text = json.dumps(doc).replace('"id": 1', '"id": ' + "9" * 5000, 1)
    elif kind == "images_dict":
        doc["images"] = {"a": 1}
    elif kind == "images_null":
        doc["images"] = None
    elif kind == "file_name_int":
        image["file_name"] = 12
    elif kind == "file_name_null":
        image["file_name"] = None
    elif kind == "file_name_dotdot":
        image["file_name"] = "../../../../etc/passwd"
    elif kind == "file_name_absolute":
        image["file_name"] = "/etc/passwd"
    elif kind == "bbox_string":
        ann["bbox"] = "10,10,50,40"
    elif kind == "bbox_short":
        ann["bbox"] = [1, 2]
    elif kind == "bbox_negative":
        ann["bbox"] = [-100, -100, -5, -5]
    elif kind == "bbox_inf":
        text = json.dumps(doc).replace("[10, 10, 50, 40]", "[10, 10, 1e999, -1e999]", 1)
    elif kind == "bbox_nested":
        ann["bbox"] = [[1], {"x": 2}, None, True]
    elif kind == "category_id_float":
        ann["category_id"] = 1.5
    elif kind == "category_id_missing":
        ann["category_id"] = 999
    elif kind == "image_id_string":
        ann["image_id"] = "1"
    elif kind == "width_string":
        image["width"] = "abc"
    elif kind == "width_zero":
        image["width"] = 0
        image["height"] = -1
    elif kind == "duplicate_ids":
        doc["images"].append(dict(image))
    elif kind == "categories_empty":
        doc["categories"] = []
    elif kind == "category_name_int":
        cat["name"] = 7
    elif kind == "category_name_huge":
        cat["name"] = "x" * 100_000
    elif kind == "unicode_names":
        cat["name"] = "\u0000\ud7ff\u202e..//"
    elif kind == "annotations_null":
        doc["annotations"] = None
    elif kind == "extra_huge_field":
        doc["info"] = {"blob": "y" * 2_000_000}
    if kind == "not_utf8":
        return kind, b"\xff\xfe" + json.dumps(doc).encode("utf-16-le")[:200] + b"\xc3\x28"
    if kind == "utf8_bom":
        return kind, b"\xef\xbb\xbf" + json.dumps(doc).encode()
    if kind == "empty":
        return kind, b""
    if kind == "truncated":
        data = json.dumps(doc).encode()
        return kind, data[:rng.randrange(1, len(data))]
    return kind, (text if text is not None else json.dumps(doc)).encode()


VOC_TEMPLATE = """<annotation><filename>{name}</filename><size><width>320</width><height>240</height><depth>3</depth>
</size><object><name>circle</name><bndbox><xmin>{xmin}</xmin><ymin>10</ymin><xmax>60</xmax><ymax>50</ymax></bndbox>
</object></annotation>"""

BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
                            for i in range(1, 10))
                  + ']><annotation><filename>&lol9;</filename></annotation>')


VOC_KINDS = ("voc_valid", "voc_malformed", "voc_billion_laughs", "voc_external_entity", "voc_xmin_text",
             "voc_no_files", "voc_file_name_dotdot", "voc_empty_file", "voc_deep")


def mutate_voc(rng: random.Random, name: str, kind: str | None = None) -> tuple[str, list[pb.AnnotationFile]]:
    kind = kind or rng.choice(VOC_KINDS)
    content = VOC_TEMPLATE.format(name=name, xmin=10)
    file_name = "a.xml"
    if kind == "voc_malformed":
        content = content[: len(content) // 2]
    elif kind == "voc_billion_laughs":
        content = BILLION_LAUGHS
    elif kind == "voc_external_entity":
        content = ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                   "<annotation><filename>&x;</filename></annotation>")
    elif kind == "voc_xmin_text":
        content = VOC_TEMPLATE.format(name=name, xmin="abc")
    elif kind == "voc_no_files":
        return kind, []
    elif kind == "voc_file_name_dotdot":
        file_name = "../../evil.xml"
    elif kind == "voc_empty_file":
        content = ""
    elif kind == "voc_deep":
        content = "<a>" * 50_000 + "</a>" * 50_000
    return kind, [pb.AnnotationFile(file_name=file_name, content=content.encode())]


# -- odd strings -----------------------------------------------------------------------------------

ODD_STRINGS = ("", "..", ".", "/etc", "/etc/passwd", "../../etc/passwd", "a/b", "a\\b", "\x00", "name\x00x",
               " ", "-", "--help", "%s%n", "${HOME}", "\u202eevil", "ünïcödé", "CON", "a" * 64, "a" * 65,
               "x" * 10_000, "y" * 1_000_000, "\ud7ff", "*", "?", "shapes;DROP TABLE models;--", "' OR 1=1 --")


def odd_string(rng: random.Random, real: str = "") -> tuple[str, str]:
    choice = rng.randrange(len(ODD_STRINGS) + 2)
    if choice == len(ODD_STRINGS):
        return "real", real
    if choice == len(ODD_STRINGS) + 1:
        return "real_upper_dot", real.upper() + "."
    value = ODD_STRINGS[choice]
    label = {"": "empty", "x" * 10_000: "long_10k", "y" * 1_000_000: "long_1m", "a" * 64: "len64",
             "a" * 65: "len65"}.get(value, repr(value)[:24])
    return label, value


ODD_INTS = (0, -1, 1, 2, 999, 2**31 - 1, -2**31)


def odd_int(rng: random.Random, real: int = 1) -> int:
    return rng.choice((*ODD_INTS, real))


# -- per-method generators ---------------------------------------------------------------------------

DATASET, TRAINING, MODEL, DETECTION = (f"artdet.v1.{s}" for s in ("DatasetService", "TrainingService",
                                                                   "ModelService", "DetectionService"))


class CaseGenerator:
    def __init__(self, targets: Targets, seed: int = 0, huge_side: int = 6000):
        self.targets = targets
        self.images = ImageFactory(seed, huge_side)
        self.upload_counter = 0

    # DatasetService ---------------------------------------------------------------------------
    def _chunks(self, name: str, data: bytes, sha: str | None = None,
                size: int = 1 << 20) -> list[pb.UploadDatasetRequest]:
        digest = hashlib.sha256(data).hexdigest() if sha is None else sha
        parts = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
        return [pb.UploadDatasetRequest(chunk=pb.ImageChunk(file_name=name, data=part,
                                                           sha256=digest if i == len(parts) - 1 else ""))
                for i, part in enumerate(parts)]

    STREAM_KINDS = ("normal", "normal", "dotdot_name", "absolute_name", "long_name", "nested_after_file",
                    "missing_sha", "wrong_sha", "upper_sha", "header_twice", "no_header",
                    "header_only", "empty_stream", "header_last", "same_file_twice",
                    "unreferenced_file", "empty_file_name", "dir_name", "nul_name", "backslash_name",
                    "sha_on_every_chunk", "format_unspecified", "format_99", "voc", "no_annotations",
                    "two_annotation_files", "odd_annotation_name", "tiny_chunks", "name_change_mid")

    def upload(self, rng: random.Random, stream_kind: str | None = None, ann_kind: str | None = None,
               image_kind: str | None = None) -> Case:
        """A mutated upload stream: header, annotation, image content, file names, sha256, ordering."""
        self.upload_counter += 1
        name_case, dataset_name = ("fuzz", f"fuzz-{rng.randrange(5)}") if rng.random() < 0.7 else \
            odd_string(rng, self.targets.dataset_name)
        image_case, image = self.images.mutate(rng, image_kind) if image_kind or rng.random() < 0.5 else \
            ("valid", self.images.small_jpeg)
        file_name = "img/a.jpg"
        stream_kind = stream_kind or rng.choice(self.STREAM_KINDS)
        names = [file_name]
        requests: list[pb.UploadDatasetRequest] = []
        chunks = self._chunks(file_name, image)
        fmt = pb.DATASET_FORMAT_COCO
        ann_case, ann = mutate_coco(rng, valid_coco(names, self.targets.class_names), ann_kind) \
            if ann_kind or rng.random() < 0.5 else \
            ("valid", json.dumps(valid_coco(names, self.targets.class_names)).encode())
        annotation_files = [pb.AnnotationFile(file_name="annotations.json", content=ann)]
        if stream_kind in ("dotdot_name", "absolute_name", "long_name", "empty_file_name", "dir_name", "nul_name",
                           "backslash_name"):
            odd = {"dotdot_name": "../../escape.jpg", "absolute_name": "/tmp/artdet-fuzz-escape.jpg",
                   "long_name": "d/" * 200 + "x" * 5000 + ".jpg", "empty_file_name": "", "dir_name": "img/",
                   "nul_name": "img/a\x00.jpg", "backslash_name": "..\\..\\escape.jpg"}[stream_kind]
            ann = json.dumps(valid_coco([odd], self.targets.class_names)).encode()
            annotation_files = [pb.AnnotationFile(file_name="annotations.json", content=ann)]
            chunks = self._chunks(odd, image)
        elif stream_kind == "nested_after_file":
            names = ["img/a.jpg", "img/a.jpg/b.jpg"]
            ann = json.dumps(valid_coco(names, self.targets.class_names)).encode()
            annotation_files = [pb.AnnotationFile(file_name="annotations.json", content=ann)]
            chunks = self._chunks(names[0], image) + self._chunks(names[1], image)
        elif stream_kind == "missing_sha":
            chunks = [pb.UploadDatasetRequest(chunk=pb.ImageChunk(file_name=file_name, data=image))]
        elif stream_kind == "wrong_sha":
            chunks = self._chunks(file_name, image, sha="0" * 64)
        elif stream_kind == "upper_sha":
            chunks = self._chunks(file_name, image, sha=hashlib.sha256(image).hexdigest().upper())
        elif stream_kind == "same_file_twice":
            chunks = chunks + chunks
        elif stream_kind == "unreferenced_file":
            chunks = chunks + self._chunks("img/extra.jpg", image)
        elif stream_kind == "sha_on_every_chunk":
            chunks = [pb.UploadDatasetRequest(chunk=pb.ImageChunk(file_name=file_name, data=image[i:i + 100],
                                                                   sha256=hashlib.sha256(image).hexdigest()))
                      for i in range(0, max(len(image), 1), max(len(image) // 3, 1))]
        elif stream_kind == "tiny_chunks":
            chunks = self._chunks(file_name, image, size=max(len(image) // 50, 1))
        elif stream_kind == "name_change_mid":
            half = len(image) // 2
            chunks = [pb.UploadDatasetRequest(chunk=pb.ImageChunk(file_name=file_name, data=image[:half])),
                      *self._chunks("img/b.jpg", image[half:])]
        elif stream_kind == "format_unspecified":
            fmt = pb.DATASET_FORMAT_UNSPECIFIED
        elif stream_kind == "format_99":
            fmt = 99
        elif stream_kind == "voc":
            fmt = pb.DATASET_FORMAT_VOC
            ann_case, annotation_files = mutate_voc(rng, file_name, ann_kind if ann_kind in VOC_KINDS else None)
        elif stream_kind == "no_annotations":
            annotation_files = []
        elif stream_kind == "two_annotation_files":
            annotation_files = annotation_files * 2
        elif stream_kind == "odd_annotation_name":
            annotation_files = [pb.AnnotationFile(file_name=odd_string(rng)[1][:5000], content=ann)]
        header = pb.UploadDatasetRequest(header=pb.DatasetHeader(name=dataset_name, format=fmt,
                                                                 annotation_files=annotation_files))
        if stream_kind == "header_twice":
            requests = [header, header, *chunks]
        elif stream_kind == "no_header":
            requests = chunks
        elif stream_kind == "header_only":
            requests = [header]
        elif stream_kind == "empty_stream":
            requests = []
        elif stream_kind == "header_last":
            requests = [*chunks, header]
        else:
            requests = [header, *chunks]
        case = f"upload:{stream_kind}|image:{image_case}|annotations:{ann_case}|name:{name_case}"
        return Case(DATASET, "UploadDataset", case, requests, request_streaming=True)

    def list_datasets(self, rng):
        label, value = odd_string(rng, self.targets.dataset_name)
        return Case(DATASET, "ListDatasets", f"name:{label}", pb.ListDatasetsRequest(name=value))

    def get_dataset(self, rng):
        label, value = odd_string(rng, self.targets.dataset_name)
        version = odd_int(rng, self.targets.dataset_version)
        return Case(DATASET, "GetDataset", f"name:{label}|version:{version}",
                    pb.GetDatasetRequest(name=value, version=version))

    def delete_dataset(self, rng):
        label, value = odd_string(rng, self.targets.dataset_name)
        version = rng.choice((-1, 999, 2**31 - 1, -2**31))  # never a real version: the fixture must survive
        if label not in ("real", "real_upper_dot") and rng.random() < 0.3:
            version = 0
        if label == "real" and value == self.targets.dataset_name:
            version = rng.choice((-1, 999, 2**31 - 1))
        return Case(DATASET, "DeleteDataset", f"name:{label}|version:{version}",
                    pb.DeleteDatasetRequest(name=value, version=version))

    # TrainingService --------------------------------------------------------------------------
    def start_job(self, rng):
        """Mutated parameters: the fuzz cancels any job the server accepts."""
        params = pb.TrainingParameters()
        parts = []
        for _ in range(rng.randint(1, 3)):
            kind = rng.choice(("arch", "strategy", "epochs", "max_size", "lr", "optimizer", "batch", "tbl",
                               "patience", "iters", "val_fraction", "extra_unknown", "extra_owned", "extra_bad",
                               "extra_huge", "extra_many", "lr_factor", "seed"))
            parts.append(kind)
            if kind == "arch":
                params.arch = rng.choice(("", "resnet9000", "../x", "fasterrcnn_resnet50_fpn_v2", "x" * 10_000))
            elif kind == "strategy":
                params.strategy = rng.choice(("", "yolo", "auto\x00", "FULL"))
            elif kind == "epochs":
                params.stage1_epochs, params.stage2_epochs = rng.choice(((-1, -1), (0, 0), (2**31 - 1, 1)))
            elif kind == "max_size":
                params.max_size = rng.choice((-1, 0, 1, 2**31 - 1))
            elif kind == "lr":
                params.lr = rng.choice((float("nan"), float("inf"), -1.0, 0.0, 1e308))
            elif kind == "lr_factor":
                params.stage2_lr_factor = rng.choice((float("nan"), -float("inf"), 0.0))
            elif kind == "optimizer":
                params.optimizer = rng.choice(("adam", "", "SGD", "\u202e"))
            elif kind == "batch":
                params.batch_size = rng.choice((-1, 0, 2**31 - 1))
            elif kind == "tbl":
                params.trainable_backbone_layers = rng.choice((-1, 99, 2**31 - 1))
            elif kind == "patience":
                params.patience = rng.choice((-1, 2**31 - 1))
            elif kind == "iters":
                params.max_iters_per_epoch = rng.choice((-1, 0, 2**31 - 1))
            elif kind == "val_fraction":
                params.val_fraction = rng.choice((-0.5, 1.0, 2.0, float("nan")))
            elif kind == "seed":
                params.seed = rng.choice((-1, 2**31 - 1))
            elif kind == "extra_unknown":
                params.extra["no_such_option"] = "1"
            elif kind == "extra_owned":
                params.extra[rng.choice(("train", "val", "images", "weights", "device", "augment"))] = "/etc/passwd"
            elif kind == "extra_bad":
                params.extra[rng.choice(("warmup_iters", "workers", "weight_decay", "max_size", "lr", "mosaic",
                                         "freeze_bn", "output", "run_dir", "eval_every"))] = \
                    rng.choice(("abc", "-5", "1e999", "nan", "", "1,2,3", "true", "../../etc"))
            elif kind == "extra_huge":
                params.extra["warmup_iters"] = "9" * 100_000
            elif kind == "extra_many":
                for i in range(5000):
                    params.extra[f"k{i}"] = "v"
        request = pb.StartJobRequest(parameters=params)
        label, value = odd_string(rng, self.targets.dataset_name)
        request.dataset_name = value if rng.random() < 0.5 else self.targets.dataset_name
        request.dataset_version = odd_int(rng, self.targets.dataset_version)
        start = rng.choice(("none", "weights_bad", "weights_none", "base_bad", "base_real"))
        if start == "weights_bad":
            request.weights = rng.choice(("../../etc/passwd", "/etc/passwd", "COCO", "", "x" * 10_000))
        elif start == "weights_none":
            request.weights = "none"
        elif start == "base_bad":
            request.base_model.name, request.base_model.version = odd_string(rng)[1], odd_int(rng)
        elif start == "base_real":
            request.base_model.name = self.targets.model_name
            request.base_model.version = rng.choice((0, self.targets.model_version, 999, -1))
        model_label, request.model_name = odd_string(rng, self.targets.model_name) if rng.random() < 0.5 else \
            ("fuzz", "fuzz-model")
        case = f"params:{'+'.join(sorted(set(parts)))}|dataset:{label}|start:{start}|model_name:{model_label}"
        return Case(TRAINING, "StartJob", case, request)

    def _job_id(self, rng) -> tuple[str, str]:
        if self.targets.job_id and rng.random() < 0.3:
            return "real", self.targets.job_id
        return odd_string(rng)

    def get_job(self, rng):
        label, value = self._job_id(rng)
        return Case(TRAINING, "GetJob", f"id:{label}", pb.GetJobRequest(id=value))

    def list_jobs(self, rng):
        state = rng.choice((0, 1, 2, 3, 4, 5, 6, 99, -1, 2**31 - 1))
        return Case(TRAINING, "ListJobs", f"state:{state}", pb.ListJobsRequest(state=state))

    def cancel_job(self, rng):
        label, value = self._job_id(rng)
        return Case(TRAINING, "CancelJob", f"id:{label}", pb.CancelJobRequest(id=value))

    def watch_job(self, rng):
        label, value = self._job_id(rng)
        return Case(TRAINING, "WatchJob", f"id:{label}", pb.WatchJobRequest(id=value), response_streaming=True)

    # ModelService -----------------------------------------------------------------------------
    def _ref(self, rng) -> tuple[str, pb.ModelRef]:
        label, name = odd_string(rng, self.targets.model_name)
        version = odd_int(rng, self.targets.model_version)
        return f"name:{label}|version:{version}", pb.ModelRef(name=name, version=version)

    def list_models(self, rng):
        label, value = odd_string(rng, self.targets.model_name)
        return Case(MODEL, "ListModels", f"name:{label}", pb.ListModelsRequest(name=value))

    def get_model(self, rng):
        label, ref = self._ref(rng)
        return Case(MODEL, "GetModel", label, ref)

    def activate_model(self, rng):
        label, ref = self._ref(rng)
        return Case(MODEL, "ActivateModel", label, ref)

    def rollback_model(self, rng):
        label, value = odd_string(rng, self.targets.model_name)
        return Case(MODEL, "RollbackModel", f"name:{label}", pb.RollbackModelRequest(name=value))

    def delete_model(self, rng):
        label, ref = self._ref(rng)
        if ref.name == self.targets.model_name and ref.version not in (self.targets.model_version, 0):
            ref.version = rng.choice((999, -1, 2**31 - 1))  # only the active version of the fixture (refused)
        return Case(MODEL, "DeleteModel", f"{label}->{ref.version}", ref)

    def download_model(self, rng):
        label, ref = self._ref(rng)
        return Case(MODEL, "DownloadModel", label, ref, response_streaming=True)

    def set_class_info(self, rng):
        label, ref = self._ref(rng)
        kind = rng.choice(("unknown_class", "many", "huge_description", "nul", "real_class", "empty_name", "none"))
        info: list[pb.ClassInfo] = []
        classes = self.targets.class_names or ["x"]
        if kind == "unknown_class":
            info = [pb.ClassInfo(name="no-such-class", description="d")]
        elif kind == "many":
            info = [pb.ClassInfo(name=f"c{i}", description="d") for i in range(5000)]
        elif kind == "huge_description":
            info = [pb.ClassInfo(name=classes[0], description="z" * 2_000_000)]
        elif kind == "nul":
            info = [pb.ClassInfo(name=classes[0] + "\x00", description="\x00\ud7ff")]
        elif kind == "real_class":
            info = [pb.ClassInfo(name=c, description=f"fuzz {rng.random()}") for c in classes]
        elif kind == "empty_name":
            info = [pb.ClassInfo(name="", description="")]
        return Case(MODEL, "SetClassInfo", f"{label}|info:{kind}",
                    pb.SetClassInfoRequest(model=ref, class_info=info))

    # DetectionService -------------------------------------------------------------------------
    def _detect_request(self, rng) -> tuple[str, pb.DetectRequest]:
        image_case, image = self.images.mutate(rng)
        request = pb.DetectRequest(image=image)
        parts = [f"image:{image_case}"]
        for _ in range(rng.choice((0, 0, 1, 2))):
            kind = rng.choice(("threshold", "max_detections", "classes_many", "classes_odd", "model_name",
                               "model_version", "classes_huge"))
            parts.append(kind)
            if kind == "threshold":
                request.score_threshold = rng.choice((float("nan"), float("inf"), -1.0, 2.0, 0.0, 1.0, 1e-45))
                parts[-1] = f"threshold:{request.score_threshold}"
            elif kind == "max_detections":
                request.max_detections = rng.choice((-1, 1, 2**31 - 1, -2**31))
                parts[-1] = f"max_detections:{request.max_detections}"
            elif kind == "classes_many":
                request.classes.extend(f"class{i}" for i in range(5000))
            elif kind == "classes_odd":
                request.classes.extend(["", "..", "\x00", *self.targets.class_names])
            elif kind == "classes_huge":
                request.classes.append("c" * 1_000_000)
            elif kind == "model_name":
                label, request.model_name = odd_string(rng, self.targets.model_name)
                parts[-1] = f"model_name:{label}"
            elif kind == "model_version":
                request.model_name = self.targets.model_name
                request.model_version = odd_int(rng, self.targets.model_version)
                parts[-1] = f"model_version:{request.model_version}"
        return "|".join(parts), request

    def detect(self, rng):
        label, request = self._detect_request(rng)
        return Case(DETECTION, "Detect", label, request)

    def detect_stream(self, rng):
        n = rng.choice((0, 1, 3, 8))
        cases, requests = zip(*(self._detect_request(rng) for _ in range(n))) if n else ((), ())
        label = f"frames:{n}|" + ",".join(c.split("|")[0].removeprefix("image:") for c in cases)
        return Case(DETECTION, "DetectStream", label, list(requests), request_streaming=True,
                    response_streaming=True)

    # raw bytes ---------------------------------------------------------------------------------
    def raw(self, rng, service: str, method: str, request_streaming: bool, response_streaming: bool) -> Case:
        other = request_class(service, method)
        options = {
            "ff_ff": b"\xff\xff",
            "bad_wire_type": b"\x0f\x01",
            "length_overflow": b"\x0a\xff\xff\xff\xff\x0f",
            "truncated_varint": b"\x08\x80\x80\x80",
            "truncated_string": b"\x0a\x10abc",
            "random_100": rng.randbytes(100),
            "random_10k": rng.randbytes(10_000),
            "bad_utf8_string": b"\x0a\x02\xc3\x28",
            "group_start": b"\x0b",
            "field_zero": b"\x00\x00",
            "wrong_message_type": pb.DetectResponse(width=5, model_name="x").SerializeToString()
            if other is not pb.DetectResponse else b"\x12\x01x",
            "nested_deep": (b"\x0a\x7f" * 3)[:6],
        }
        kind = rng.choice(sorted(options))
        payload = options[kind]
        if request_streaming:
            payload = [payload] if rng.random() < 0.7 else [options["ff_ff"], payload, payload]
        return Case(service, method, f"raw:{kind}", payload, raw=True, request_streaming=request_streaming,
                    response_streaming=response_streaming)

    GENERATORS = {
        "UploadDataset": "upload", "ListDatasets": "list_datasets", "GetDataset": "get_dataset",
        "DeleteDataset": "delete_dataset", "StartJob": "start_job", "GetJob": "get_job", "ListJobs": "list_jobs",
        "CancelJob": "cancel_job", "WatchJob": "watch_job", "ListModels": "list_models", "GetModel": "get_model",
        "ActivateModel": "activate_model", "RollbackModel": "rollback_model", "DeleteModel": "delete_model",
        "DownloadModel": "download_model", "SetClassInfo": "set_class_info", "Detect": "detect",
        "DetectStream": "detect_stream",
    }
    # the RPCs with the most input surface get more of the cases
    WEIGHTS = {"UploadDataset": 6, "Detect": 8, "DetectStream": 2, "StartJob": 3, "SetClassInfo": 2}

    METADATA_KINDS = ("huge_value", "many_keys", "binary", "auth_twice", "auth_lowercase", "auth_huge",
                      "auth_no_space", "auth_empty_token", "auth_basic")

    @classmethod
    def odd_metadata(cls, rng: random.Random, case: Case, kind: str | None = None) -> Case:
        """Odd gRPC metadata on an otherwise generated case."""
        kind = kind or rng.choice(cls.METADATA_KINDS)
        extra, replace = {
            "huge_value": ((("x-fuzz", "v" * 6000),), False),
            "many_keys": (tuple((f"x-fuzz-{i}", "v") for i in range(100)), False),
            "binary": ((("x-fuzz-bin", rng.randbytes(512)),), False),
            "auth_twice": ((("authorization", "Bearer not-a-token"),), False),
            "auth_lowercase": ((("authorization", "bearer admin-token"),), True),
            "auth_huge": ((("authorization", "Bearer " + "a" * 7000),), True),
            "auth_no_space": ((("authorization", "Beareradmin-token"),), True),
            "auth_empty_token": ((("authorization", "Bearer "),), True),
            "auth_basic": ((("authorization", "Basic YWRtaW46YWRtaW4="),), True),
        }[kind]
        case.metadata, case.replace_auth, case.case = extra, replace, f"meta:{kind}|{case.case}"
        return case

    def corpus(self, rng: random.Random) -> list[Case]:
        """Every image, annotation and upload-stream mutation once (Detect / UploadDataset), every odd-metadata
        kind once, every RPC with raw bytes once: the systematic part that precedes the random cases."""
        cases = [Case(DETECTION, "Detect", f"image:{kind}",
                      pb.DetectRequest(image=self.images.mutate(rng, kind)[1], model_name=self.targets.model_name))
                 for kind in self.images.all_kinds()]
        cases += [self.upload(rng, stream_kind=kind) for kind in dict.fromkeys(self.STREAM_KINDS)]
        cases += [self.upload(rng, stream_kind="normal", ann_kind=kind) for kind in COCO_KINDS]
        cases += [self.upload(rng, stream_kind="voc", ann_kind=kind) for kind in VOC_KINDS]
        cases += [self.odd_metadata(rng, self.detect(rng), kind) for kind in self.METADATA_KINDS]
        for service, method, client_streaming, server_streaming in methods():
            cases.append(self.raw(rng, service, method, client_streaming, server_streaming))
        return cases

    def generate(self, rng: random.Random, count: int, raw_share: float = 0.12,
                 metadata_share: float = 0.05, systematic: bool = True) -> Iterator[Case]:
        """`count` cases: every RPC with a generated request, then (systematic) the corpus, then random ones."""
        if systematic:
            rpcs = methods()
            for index, (service, method, client_streaming, server_streaming) in enumerate(rpcs):
                if index >= count:
                    return
                yield getattr(self, self.GENERATORS[method])(rng) if method in self.GENERATORS else \
                    Case(service, method, "empty", [] if client_streaming else request_class(service, method)(),
                         request_streaming=client_streaming, response_streaming=server_streaming)
            corpus = self.corpus(rng)[:max(count - len(rpcs), 0)]
            yield from corpus
            count -= len(rpcs) + len(corpus)
            if count <= 0:
                return
            yield from self._random(rng, count, raw_share, metadata_share, first_rounds_done=True)
            return
        yield from self._random(rng, count, raw_share, metadata_share)

    def _random(self, rng: random.Random, count: int, raw_share: float, metadata_share: float,
                first_rounds_done: bool = False) -> Iterator[Case]:
        rpcs = methods()
        pool = [m for m in rpcs for _ in range(self.WEIGHTS.get(m[1], 1))]
        for index in range(count):
            # without the corpus: every RPC once with a generated request, once with raw bytes
            first_rounds = not first_rounds_done and index < 2 * len(rpcs)
            service, method, client_streaming, server_streaming = rpcs[index % len(rpcs)] if first_rounds else \
                rng.choice(pool)
            if first_rounds and index >= len(rpcs) or (not first_rounds and rng.random() < raw_share):
                yield self.raw(rng, service, method, client_streaming, server_streaming)
                continue
            name = self.GENERATORS.get(method)
            if name is None:  # an RPC added after this fuzzer: send it an empty request and raw bytes
                yield Case(service, method, "empty", [] if client_streaming else request_class(service, method)(),
                           request_streaming=client_streaming, response_streaming=server_streaming)
                continue
            case = getattr(self, name)(rng)
            if not first_rounds and rng.random() < metadata_share:
                case = self.odd_metadata(rng, case)
            yield case


# -- sending ---------------------------------------------------------------------------------------

def _identity(data):
    return data


def send(channel: grpc.Channel, case: Case, metadata: tuple = (), deadline: float = DEADLINE_S) -> tuple[Any, Outcome]:
    """Send one case; returns (last response or None, Outcome). Never raises for an RPC error."""
    if case.raw:
        serializer, deserializer = _identity, _identity
    else:
        serializer = lambda m: m.SerializeToString()  # noqa: E731
        deserializer = _identity
    kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary, (True, True): channel.stream_stream}[
        (case.request_streaming, case.response_streaming)]
    call = kind(case.path, request_serializer=serializer, response_deserializer=deserializer)
    payload = iter(list(case.payload)) if case.request_streaming else case.payload
    if case.metadata:
        metadata = tuple(case.metadata) if case.replace_auth else (*metadata, *case.metadata)
    started = time.perf_counter()
    answer, count, bug_in_frame = None, 0, None
    try:
        if case.response_streaming:
            responses = call(payload, metadata=metadata, timeout=deadline)
            for answer in responses:
                count += 1
                frame_bug = frame_error(case, answer)
                if frame_bug and not bug_in_frame:
                    bug_in_frame = frame_bug
                if count >= MAX_STREAM_MESSAGES:
                    responses.cancel()
                    break
        else:
            answer = call(payload, metadata=metadata, timeout=deadline)
            count = 1
        code, message = "OK", ""
    except grpc.RpcError as exc:
        code, message = exc.code().name, exc.details() or ""
        if code == "CANCELLED" and count >= MAX_STREAM_MESSAGES:
            code = "OK"
    except (ValueError, TypeError) as exc:  # refused by the client library before sending (odd metadata)
        code, message = "CLIENT_REFUSED", f"{type(exc).__name__}: {exc}"
    if code == "OK" and bug_in_frame:  # DetectStream reports a bad frame in-band and goes on
        code, message = bug_in_frame
    seconds = time.perf_counter() - started
    hang = code == "DEADLINE_EXCEEDED" and seconds >= deadline * 0.95
    return answer, Outcome(case.method, case.case, code, message[:300], round(seconds, 4), count, hang)


def frame_error(case: Case, answer: bytes) -> tuple[str, str] | None:
    """(code, message) when a DetectStream answer carries an in-band INTERNAL / UNKNOWN frame error."""
    if case.method != "DetectStream" or case.raw or "error" not in pb.DetectResponse.DESCRIPTOR.fields_by_name:
        return None
    try:
        response = pb.DetectResponse.FromString(answer)
    except Exception:  # noqa: BLE001
        return None
    if response.HasField("error") and response.error.code in BUG_CODES:
        return response.error.code, f"(frame error) {response.error.message}"
    return None


_VOLATILE = re.compile(r"[0-9a-f]{8,}|\b\d+\b")


def failure_key(outcome: Outcome) -> tuple[str, str, str, str]:
    """(method, case, code, message with ids and numbers masked): one row per distinct failure."""
    return outcome.method, outcome.case, outcome.code, _VOLATILE.sub("#", outcome.message)[:200]


@dataclass
class FuzzResult:
    outcomes: list[Outcome] = field(default_factory=list)
    deaths: list[dict] = field(default_factory=list)
    started_jobs: list[str] = field(default_factory=list)

    def bugs(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.code in BUG_CODES]

    def hangs(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.hang]

    def summary(self) -> dict:
        by_method: dict[str, dict[str, int]] = {}
        for o in self.outcomes:
            by_method.setdefault(o.method, {}).setdefault(o.code, 0)
            by_method[o.method][o.code] += 1
        distinct: dict[tuple, int] = {}
        samples: dict[tuple, str] = {}
        groups: dict[tuple, dict] = {}
        for o in self.bugs() + self.hangs():
            key = failure_key(o)
            distinct[key] = distinct.get(key, 0) + 1
            samples.setdefault(key, o.message)
            family = "raw bytes" if o.case.startswith("raw:") else "messages"
            group = groups.setdefault((o.code, key[3], family), {"methods": set(), "cases": set(), "count": 0})
            group["methods"].add(o.method)
            group["cases"].add(o.case if family == "messages" else o.case)
            group["count"] += 1
        return {
            "requests": len(self.outcomes),
            "server_deaths": len(self.deaths),
            "internal": sum(o.code == "INTERNAL" for o in self.outcomes),
            "unknown": sum(o.code == "UNKNOWN" for o in self.outcomes),
            "hangs_over_10s": len(self.hangs()),
            "codes_by_method": by_method,
            "failures": [{"method": k[0], "case": k[1], "code": k[2], "message": k[3], "count": n,
                          "sample_message": samples[k]} for k, n in sorted(distinct.items())],
            "failure_groups": [{"code": k[0], "message": k[1], "family": k[2], "count": g["count"],
                                "methods": sorted(g["methods"]), "cases": sorted(g["cases"])}
                               for k, g in sorted(groups.items())],
            "deaths": self.deaths,
            "slowest": [{"method": o.method, "case": o.case, "code": o.code, "seconds": o.seconds}
                        for o in sorted(self.outcomes, key=lambda o: -o.seconds)[:8]],
            "jobs_accepted_and_cancelled": len(self.started_jobs),
        }


def run_cases(channel: grpc.Channel, cases: Iterable[Case], metadata: tuple = (), deadline: float = DEADLINE_S,
              alive: Callable[[], bool] = lambda: True, restart: Callable[[], grpc.Channel] | None = None,
              cancel_jobs: bool = True, on_outcome: Callable[[Outcome], None] | None = None) -> FuzzResult:
    """Send every case in order. A dead server is recorded against the case in flight and, given `restart`,
    brought back so the run goes on. Jobs the server accepts are cancelled at once (the fuzz trains nothing)."""
    result = FuzzResult()
    for case in cases:
        answer, outcome = send(channel, case, metadata, deadline)
        result.outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)
        if cancel_jobs and case.method == "StartJob" and outcome.code == "OK" and answer:
            job = pb.Job.FromString(answer)
            result.started_jobs.append(job.id)
            try:
                channel.unary_unary("/artdet.v1.TrainingService/CancelJob",
                                    request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=pb.Job.FromString)(
                    pb.CancelJobRequest(id=job.id), metadata=metadata, timeout=deadline)
            except grpc.RpcError:
                pass
        if not alive():
            result.deaths.append({"method": case.method, "case": case.case, "code": outcome.code,
                                  "message": outcome.message})
            if restart is None:
                break
            channel = restart()
    return result
