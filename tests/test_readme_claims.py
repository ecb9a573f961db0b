"""README claims no other test pins: `--patience` ends a stage (not the run) and a run killed after an early
stop resumes into the next stage; a Detect-only replica follows the active.json the full server writes;
an upload over --max-upload-mb is RESOURCE_EXHAUSTED; Detect on a model with no active version is
FAILED_PRECONDITION; StartJob with base_model retrains a registered model into a new one; a Pascal VOC
folder uploads through the server."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from artdet.tools.client import push_dataset
from artdet.v1 import artdet_pb2 as pb
from tests.conftest import ROOT, TINY_ARCH, TOKENS, ServerProcess, artdet, wait_for


def _events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    events = []
    for line in (path.read_text().splitlines() if path.is_file() else []):
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            pass
    return events


def _jpeg(size=(128, 96)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 140, 60)).save(buffer, "JPEG")
    return buffer.getvalue()


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()


# --patience: early stopping, and resuming after it ------------------------------------------------------

# lr ~ 0: validation mAP cannot improve, so a patience of 1 ends stage 1 after its second epoch of 3
EARLY_STOP = ["--arch", TINY_ARCH, "--weights", "coco", "--strategy", "two-stage", "--stage1-epochs", "3",
              "--stage2-epochs", "1", "--patience", "1", "--lr", "1e-9", "--warmup-iters", "0", "--max-size", "96",
              "--batch-size", "2", "--max-iters-per-epoch", "1", "--workers", "0", "--seed", "5", "--quiet"]


def _early_stop_args(shapes, out: Path) -> list[str]:
    return ["train", "--train", shapes["train"], "--val", shapes["val"], "--out", out, *EARLY_STOP]


@pytest.fixture(scope="module")
def early_stopped_run(tmp_path_factory, torch_home, shapes) -> Path:
    out = tmp_path_factory.mktemp("patience") / "run"
    artdet(*_early_stop_args(shapes, out))
    return out


def _epochs(metrics: dict) -> list[tuple[str, int, int]]:
    return [(e["stage"], e["epoch"], e["global_epoch"]) for e in metrics["epochs"]]


def test_patience_ends_a_stage_not_the_run(early_stopped_run):
    metrics = json.loads((early_stopped_run / "metrics.json").read_text())
    assert [s["epochs"] for s in metrics["strategy"]["stages"]] == [3, 1]  # the plan
    # stage 1: epoch 2 brought no gain over epoch 1, so stage 1 ended there; stage 2 still ran
    assert _epochs(metrics) == [("feature-extraction", 1, 1), ("feature-extraction", 2, 2), ("fine-tuning", 1, 4)]
    maps = [e["map"] for e in metrics["epochs"]]
    assert maps[1] <= maps[0]
    events = _events(early_stopped_run)
    stopped = [e for e in events if e["type"] == "early_stopped"]
    assert [(e["stage"], e["epochs_without_gain"]) for e in stopped] == [("feature-extraction", 1)]
    steps = [(e["stage"], e["epoch"]) for e in events if e["type"] == "step"]
    assert steps == [("feature-extraction", 1), ("feature-extraction", 2), ("fine-tuning", 1)]
    assert [e["type"] for e in events].count("run_finished") == 1


def test_a_run_killed_after_an_early_stop_resumes_into_the_next_stage(early_stopped_run, shapes, tmp_path):
    from artdet.detector.training import train

    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "artdet.tools.cli", *map(str, _early_stop_args(shapes, killed))],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:  # killed as stage 2 starts, so the last checkpoint is the one that recorded the early stop
        wait_for(lambda: process.poll() is not None or any(
            e["type"] == "stage_started" and e["stage_index"] == 1 for e in _events(killed)), 600, "stage 2")
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    before = _events(killed)
    stops = [i for i, e in enumerate(before) if e["type"] == "early_stopped"]
    assert stops, "stage 1 did not stop early"
    assert [e["type"] for e in before[stops[-1]:]].count("checkpoint_saved") == 1, "killed later than planned"

    summary = train(None, killed, resume=True, progress=False)
    resumed = _events(killed)[len(before):]
    assert (resumed[0]["type"], resumed[0]["stage_index"], resumed[0]["epoch"]) == ("resumed", 1, 0)
    assert {e["stage"] for e in resumed if e["type"] == "step"} == {"fine-tuning"}  # stage 1 is not redone
    straight = json.loads((early_stopped_run / "metrics.json").read_text())
    assert _epochs(summary) == _epochs(straight)
    assert json.loads((killed / "metrics.json").read_text())["epochs"] == summary["epochs"]


# the service ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def registry(overfit_run, overfit_export, tmp_path_factory, torch_home):
    """A full server whose store holds the overfit shapes set as dataset "shapes", the overfit model as
    "shapes" v1 (registered from a job whose checkpoint is on disk) and v2, and "dormant" v1 (never
    activated); uploads limited to 1 MB. Nothing is active at the start."""
    from artdet.detector.dataset import load_coco
    from artdet.server.store import Store

    root = tmp_path_factory.mktemp("claims")
    store = Store(root / "data", min_free_mb=0)
    staged = store.staging_dir("upload-")
    source = overfit_run.parent  # train.json names its images "images/..."
    shutil.copytree(source / "images", staged / "images" / "images")
    shutil.copy(source / "train.json", staged / "annotations.json")
    statistics = load_coco(staged / "annotations.json", staged / "images").statistics()
    dataset, _ = store.add_dataset("shapes", "0" * 64, statistics, staged)
    job = store.create_job("overfit0job1", dataset, "shapes", {"arch": TINY_ARCH}, "")
    (job.run_dir / "checkpoints").mkdir()
    shutil.copy(overfit_run / "checkpoints" / "best.pt", job.run_dir / "checkpoints" / "best.pt")
    store.update_job(job.id, state="succeeded", model_version=1, started_at=time.time(), finished_at=time.time())
    card = {"arch": TINY_ARCH, "class_names": ["circle", "square"], "metrics": {}}
    store.add_model("shapes", job.id, overfit_export["path"], card)
    store.add_model("shapes", "overfit0job2", overfit_export["path"], card)
    store.add_model("dormant", "overfit0job3", overfit_export["path"], card)
    del store
    server = ServerProcess(root / "data", "--max-upload-mb", "1", "--min-free-mb", "0",
                           env={"TORCH_HOME": str(torch_home)}).start()
    server.source = source
    yield server
    server.stop()


def test_detect_on_a_model_without_an_active_version_is_failed_precondition(registry):
    client = registry.connect("client")
    detect = client.detection().Detect
    code, details = _code(lambda: detect(pb.DetectRequest(image=_jpeg(), model_name="dormant"),
                                         metadata=client.metadata, timeout=60))
    assert code == grpc.StatusCode.FAILED_PRECONDITION, (code, details)
    assert "'dormant' has no active version" in details
    reply = detect(pb.DetectRequest(image=_jpeg(), model_name="dormant", model_version=1), metadata=client.metadata,
                   timeout=60)  # the model is there: only the activation is missing
    assert (reply.model_name, reply.model_version) == ("dormant", 1)


def test_a_detect_only_replica_follows_activations_on_the_full_server(registry, tmp_path):
    admin = registry.connect("admin")
    replica = ServerProcess(tmp_path / "replica", "--model-dir", registry.data_dir / "models",
                            "--refresh-seconds", "0.2").start()
    try:
        client = replica.connect("client")

        def served() -> int:
            try:
                return client.detection().Detect(pb.DetectRequest(image=_jpeg(), model_name="shapes"),
                                                 metadata=client.metadata, timeout=60).model_version
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:  # nothing active yet
                    raise
                return 0

        for version in (1, 2):
            admin.models().ActivateModel(pb.ModelRef(name="shapes", version=version), metadata=admin.metadata,
                                         timeout=60)
            wait_for(lambda: served() == version, 60, f"the replica to serve version {version}")
        assert [served() for _ in range(3)] == [2, 2, 2]
    finally:
        replica.stop()


def test_an_upload_over_max_upload_mb_is_resource_exhausted(registry, tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (700, 700, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    assert (tmp_path / "noise.png").stat().st_size > 1 << 20
    coco = {"categories": [{"id": 1, "name": "noise"}],
            "images": [{"id": 1, "file_name": "noise.png", "width": 700, "height": 700}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 100, 100]}]}
    (tmp_path / "big.json").write_text(json.dumps(coco))
    annotator = registry.connect("annotator")
    code, details = _code(lambda: push_dataset(annotator, "big", tmp_path / "big.json", progress=False, timeout=120))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    assert f"limit of {1 << 20} bytes" in details and str(registry.data_dir) not in details
    listed = annotator.datasets().ListDatasets(pb.ListDatasetsRequest(), metadata=annotator.metadata, timeout=60)
    assert "big" not in {d.name for d in listed.datasets}
    assert list((registry.data_dir / "tmp").iterdir()) == []  # the staged upload went before the answer


def _voc_folder(coco_file: Path, out: Path) -> dict[str, list]:
    """The COCO set as a Pascal VOC folder (1-based pixel corners); returns file name -> [(class, bbox)]."""
    coco = json.loads(coco_file.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    (out / "Annotations").mkdir(parents=True)
    (out / "JPEGImages").mkdir()
    expected = {}
    for image in coco["images"]:
        name = Path(image["file_name"]).name
        shutil.copy(coco_file.parent / image["file_name"], out / "JPEGImages" / name)
        boxes = [(names[a["category_id"]], a["bbox"]) for a in coco["annotations"] if a["image_id"] == image["id"]]
        objects = "".join(
            f"<object><name>{label}</name><difficult>0</difficult><bndbox><xmin>{x + 1:g}</xmin>"
            f"<ymin>{y + 1:g}</ymin><xmax>{x + w:g}</xmax><ymax>{y + h:g}</ymax></bndbox></object>"
            for label, (x, y, w, h) in boxes)
        (out / "Annotations" / f"{Path(name).stem}.xml").write_text(
            f"<annotation><folder>JPEGImages</folder><filename>{name}</filename><size><width>{image['width']}"
            f"</width><height>{image['height']}</height><depth>3</depth></size>{objects}</annotation>")
        expected[name] = sorted(boxes)
    return expected


def test_a_voc_folder_uploads_through_the_server(registry, tmp_path):
    expected = _voc_folder(registry.source / "train.json", tmp_path / "voc")
    env = {"ARTDET_TOKEN": TOKENS["annotator"]}
    pushed = json.loads(artdet("push", tmp_path / "voc" / "Annotations", "--server", registry.address, "--name",
                               "voc-shapes", "--json", "--quiet", env=env).stdout)
    assert pushed["version"] == 1
    annotator = registry.connect("annotator")
    stats = annotator.datasets().GetDataset(pb.GetDatasetRequest(name="voc-shapes"), metadata=annotator.metadata,
                                            timeout=60).statistics
    counts = {}
    for boxes in expected.values():
        for label, _ in boxes:
            counts[label] = counts.get(label, 0) + 1
    assert stats.images == len(expected) == 16 and stats.boxes == sum(counts.values())
    assert {c.name: c.boxes for c in stats.boxes_per_class} == counts
    stored = json.loads((registry.data_dir / "datasets" / "voc-shapes" / "v1" / "annotations.json").read_text())
    classes = {c["id"]: c["name"] for c in stored["categories"]}
    got = {image["file_name"]: sorted((classes[a["category_id"]], a["bbox"]) for a in stored["annotations"]
                                      if a["image_id"] == image["id"]) for image in stored["images"]}
    assert got.keys() == expected.keys()
    for name, boxes in expected.items():  # the same boxes, to the pixel, as the COCO set they came from
        assert [label for label, _ in got[name]] == [label for label, _ in boxes], name
        assert np.allclose([box for _, box in got[name]], [box for _, box in boxes], atol=1e-6), name
    again = json.loads(artdet("push", tmp_path / "voc" / "Annotations", "--server", registry.address, "--name",
                              "voc-shapes", "--json", "--quiet", env=env).stdout)
    assert again["version"] == 1 and again["reused"]


def test_a_registered_model_is_retrained_into_a_new_model(registry):
    operator = registry.connect("operator")
    training = operator.training()
    parameters = pb.TrainingParameters(strategy="head-only", stage1_epochs=1, stage2_epochs=0, max_size=128,
                                       batch_size=2, max_iters_per_epoch=1, val_fraction=0.5,
                                       extra={"workers": "0"})
    job = training.StartJob(pb.StartJobRequest(dataset_name="shapes", base_model=pb.ModelRef(name="shapes", version=1),
                                               model_name="retrained", parameters=parameters),
                            metadata=operator.metadata, timeout=60)
    events = list(training.WatchJob(pb.WatchJobRequest(id=job.id), metadata=operator.metadata, timeout=600))
    assert events[-1].type == "finished"
    done = training.GetJob(pb.GetJobRequest(id=job.id), metadata=operator.metadata, timeout=60)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error
    assert (done.model_name, done.model_version) == ("retrained", 1)
    summary = json.loads(done.summary_json)
    assert summary["starting_point"]["kind"] == "checkpoint"
    # it starts from what shapes v1 learnt (this very set), not from the COCO weights, which know no shapes
    assert summary["baseline"]["ap50"] >= 0.5, summary["baseline"]
    assert summary["warm_started_classes"] == {"circle": "circle", "square": "square"}
    model = operator.models().GetModel(pb.ModelRef(name="retrained", version=1), metadata=operator.metadata,
                                       timeout=60)
    assert (model.arch, list(model.class_names), model.job_id) == (TINY_ARCH, ["circle", "square"], job.id)
    listed = operator.models().ListModels(pb.ListModelsRequest(), metadata=operator.metadata, timeout=60).models
    assert sorted((m.name, m.version) for m in listed) == [("dormant", 1), ("retrained", 1), ("shapes", 1),
                                                           ("shapes", 2)]
