"""Active learning: which images to label next (SuggestImages, `artdet suggest`), and its measures."""

from __future__ import annotations

import json
import shutil

import grpc
import numpy as np
import pytest

from artdet.v1 import artdet_pb2 as pb
from artdet.detector.results import Detection, DetectionResult
from artdet.detector.suggest import PoolImage, disagreement, rank, uncertainty
from tests.conftest import ServerProcess, TOKENS, artdet

MODEL = "shapes"


def test_uncertainty_is_highest_for_scores_near_a_half():
    assert uncertainty([]) == 0.0
    assert uncertainty([0.5]) == pytest.approx(1.0)
    assert uncertainty([0.99, 0.98]) < 0.15 < uncertainty([0.6, 0.4])
    assert uncertainty([0.9] * 5 + [0.5] * 3) == pytest.approx(uncertainty([0.9] * 5))  # the top 5 only


def _result(*boxes):
    return DetectionResult(100, 100, [Detection(box, score, 1, label) for label, score, box in boxes])


def test_flip_disagreement_counts_boxes_one_view_misses_and_poor_overlaps():
    same = _result(("circle", 0.9, (10, 10, 50, 50)))
    assert disagreement(same, same) == (0.0, 0, 0)
    assert disagreement(same, _result()) == (1.0, 1, 0)  # the mirror image sees nothing
    shifted = _result(("circle", 0.9, (14, 10, 54, 50)))
    value, only_a, only_b = disagreement(same, shifted)
    assert 0 < value < 0.5 and (only_a, only_b) == (0, 0)
    other_label = _result(("square", 0.9, (10, 10, 50, 50)))
    assert disagreement(same, other_label) == (1.0, 1, 1)
    faint = _result(("circle", 0.1, (10, 10, 50, 50)))  # below the confidence that counts: no disagreement
    assert disagreement(faint, _result())[0] == 0.0


def _pool_image(name, score, embedding):
    return PoolImage(name, _result(("circle", score, (0, 0, 10, 10))), uncertainty([score]), 0.0,
                     np.asarray(embedding, np.float32))


def test_diversity_skips_near_duplicates_and_what_is_labelled():
    pool = [_pool_image("a.jpg", 0.5, [1, 0, 0]), _pool_image("a-copy.jpg", 0.5, [1, 0, 0.01]),
            _pool_image("b.jpg", 0.6, [0, 1, 0]), _pool_image("c.jpg", 0.9, [0, 0, 1])]
    plain, _ = rank(pool, 2, diversity=False)
    assert [s.image.file_name for s in plain] == ["a-copy.jpg", "a.jpg"]  # equal scores: by name
    spread, notes = rank(pool, 2)
    assert [s.image.file_name for s in spread] == ["a-copy.jpg", "b.jpg"] and not notes
    assert spread[0].novelty is None and spread[1].novelty == pytest.approx(1.0, abs=0.01)
    assert any("novelty" in reason for reason in spread[1].reasons)
    labelled = np.asarray([[1, 0, 0], [0, 1, 0]], np.float32)  # a and b look like what is labelled already
    fresh, _ = rank(pool, 2, labelled=labelled)
    assert fresh[0].image.file_name == "c.jpg"
    pool[0].embedding = None  # a model exported without embeddings: uncertainty alone, said so
    fallback, notes = rank(pool, 2)
    assert [s.image.file_name for s in fallback] == ["a-copy.jpg", "a.jpg"] and "diversity not used" in notes[0]


@pytest.fixture(scope="module")
def server(overfit_export, tmp_path_factory):
    from artdet.server.store import Store

    root = tmp_path_factory.mktemp("suggest")
    store = Store(root / "data", min_free_mb=0)
    store.add_model(MODEL, "job0", overfit_export["path"], {"arch": "fasterrcnn_mobilenet_v3_large_320_fpn",
                                                            "class_names": ["circle", "square"], "metrics": {}})
    del store
    process = ServerProcess(root / "data", "--min-free-mb", "0").start()
    admin = process.connect("admin")
    admin.models().ActivateModel(pb.ModelRef(name=MODEL, version=1), metadata=admin.metadata, timeout=60)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def pool(overfit_export, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pool")
    for record in overfit_export["data"].images[:8]:
        shutil.copy(record.path, folder / record.path.name)
    return folder


def _suggest(server, pool, *args, role="annotator"):
    tasks = pool.parent / f"{pool.name}-tasks.json"
    result = artdet("suggest", "--server", server.address, "--token", TOKENS[role], "--pool", str(pool),
                    "--tasks", str(tasks), "--json", *args)
    return json.loads(result.stdout), json.loads(tasks.read_text())


def test_suggest_ranks_a_folder_and_writes_label_studio_tasks_with_pre_annotations(server, pool):
    reply, tasks = _suggest(server, pool, "--budget", "3", "--image-url-prefix", "/data/local-files/?d=pool/")
    suggestions = reply["suggestions"]
    assert [s["rank"] for s in suggestions] == [1, 2, 3] and reply["pool_images"] == 8
    assert reply["model_name"] == MODEL and reply["model_version"] == 1
    scores = [s["score"] for s in suggestions]
    assert all(s["reasons"] and s["reasons"][0].startswith("uncertainty") for s in suggestions)
    assert [t["data"]["image"] for t in tasks] == [f"/data/local-files/?d=pool/{s['file_name']}" for s in suggestions]
    assert all(0.0 <= score <= 2.0 for score in scores)
    # the pre-annotations are the model's boxes for that image, in percent of it
    first, task = suggestions[0], tasks[0]
    client = server.connect("client")
    detected = client.detection().Detect(pb.DetectRequest(
        image=(pool / first["file_name"]).read_bytes(), score_threshold=0.05), metadata=client.metadata)
    result = task["predictions"][0]["result"]
    assert task["predictions"][0]["model_version"] == f"{MODEL}:v1"
    assert len(result) == len(detected.detections)
    for region, det in zip(result, detected.detections):
        value = region["value"]
        assert region["type"] == "rectanglelabels" and value["rectanglelabels"] == [det.label]
        assert value["x"] == pytest.approx(100 * det.box.x1 / detected.width, abs=1e-3)
        assert value["width"] == pytest.approx(100 * (det.box.x2 - det.box.x1) / detected.width, abs=1e-3)
        assert (region["original_width"], region["original_height"]) == (detected.width, detected.height)


def test_diversity_keeps_copies_of_one_image_out_of_the_suggestions(server, pool, tmp_path):
    ranked, _ = _suggest(server, pool, "--budget", "8", "--strategy", "uncertainty")
    scores = [s["score"] for s in ranked["suggestions"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 8  # without diversity: by score alone
    assert all(s["score"] == pytest.approx(s["uncertainty"] + s["disagreement"]) for s in ranked["suggestions"])
    top = ranked["suggestions"][0]["file_name"]
    copies = tmp_path / "copies"
    shutil.copytree(pool, copies)
    for index in range(2):
        shutil.copy(pool / top, copies / f"copy{index}-{top}")
    plain, _ = _suggest(server, copies, "--budget", "3", "--strategy", "uncertainty")
    assert {s["file_name"] for s in plain["suggestions"]} == {top, f"copy0-{top}", f"copy1-{top}"}
    spread, _ = _suggest(server, copies, "--budget", "3")
    names = [s["file_name"] for s in spread["suggestions"]]
    assert len({name.split("-", 1)[-1] if name.startswith("copy") else name for name in names}) == 3, names
    assert spread["suggestions"][0]["novelty"] == -1.0  # the first pick: nothing to be far from yet
    assert all(s["novelty"] > 0.0 for s in spread["suggestions"][1:])


def test_suggest_refusals_name_the_field(server, pool):
    stub = server.connect("annotator").detection()
    metadata = server.connect("annotator").metadata
    image = next(pool.iterdir()).read_bytes()

    def code(*messages):
        with pytest.raises(grpc.RpcError) as caught:
            stub.SuggestImages(iter(messages), metadata=metadata, timeout=60)
        return caught.value.code(), caught.value.details()

    header = pb.SuggestImagesRequest(header=pb.SuggestHeader(budget=2))
    assert code(pb.SuggestImagesRequest(image=pb.PoolImage(file_name="a.jpg", image=image))) == (
        grpc.StatusCode.INVALID_ARGUMENT, "header: the first message must be the header")
    assert code(pb.SuggestImagesRequest(header=pb.SuggestHeader(budget=0)))[1].startswith("header.budget")
    status, details = code(header, pb.SuggestImagesRequest(image=pb.PoolImage(file_name="../a.jpg", image=image)))
    assert status == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("image 1.file_name")
    status, details = code(header, pb.SuggestImagesRequest(image=pb.PoolImage(file_name="a.jpg", image=b"nope")))
    assert status == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("pool: no readable image (a.jpg")
    status, _ = code(pb.SuggestImagesRequest(header=pb.SuggestHeader(budget=2, pool_dataset="missing")))
    assert status == grpc.StatusCode.NOT_FOUND
    client = server.connect("client")  # the museum app's token may rank images it sends, not read datasets
    with pytest.raises(grpc.RpcError) as caught:
        client.detection().SuggestImages(iter([pb.SuggestImagesRequest(header=pb.SuggestHeader(
            budget=2, pool_dataset="labelled"))]), metadata=client.metadata, timeout=60)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED and "header.pool_dataset" in caught.value.details()
    # an unreadable image among readable ones is skipped and said so
    reply = stub.SuggestImages(iter([header, pb.SuggestImagesRequest(image=pb.PoolImage(file_name="x.jpg", image=b"?")),
                                     pb.SuggestImagesRequest(image=pb.PoolImage(file_name="a.jpg", image=image))]),
                               metadata=metadata, timeout=60)
    assert [s.file_name for s in reply.suggestions] == ["a.jpg"] and reply.notes[0].startswith("skipped: x.jpg")
    operator = server.connect("operator")
    with pytest.raises(grpc.RpcError) as caught:
        operator.detection().SuggestImages(iter([header]), metadata=operator.metadata, timeout=60)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_stored_dataset_is_a_pool_and_a_labelled_set_to_differ_from(server, pool):
    from artdet.tools.client import push_dataset

    push_dataset(server.connect("annotator"), "labelled", _unlabelled_coco(pool), pool, progress=False)
    from_folder, _ = _suggest(server, pool, "--budget", "8", "--strategy", "uncertainty")
    stored = json.loads(artdet("suggest", "--server", server.address, "--token", TOKENS["annotator"],
                               "--pool", "labelled", "--budget", "8", "--strategy", "uncertainty",
                               "--tasks", str(pool.parent / "stored-tasks.json"), "--json").stdout)
    assert [s["file_name"] for s in stored["suggestions"]] == [s["file_name"] for s in from_folder["suggestions"]]
    # every pool image is in the labelled set: even the first pick is measured against it, and is close
    differ, _ = _suggest(server, pool, "--budget", "3", "--dataset", "labelled")
    assert all(0.0 <= s["novelty"] < 0.01 for s in differ["suggestions"]), differ["suggestions"]


def _unlabelled_coco(pool):
    from artdet.detector.images import read_image_size

    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]}
    for index, path in enumerate(sorted(pool.iterdir()), start=1):
        size = read_image_size(path)
        coco["images"].append({"id": index, "file_name": path.name, "width": size.width, "height": size.height})
    out = pool.parent / "pool.json"
    out.write_text(json.dumps(coco))
    return out
