"""The annotation loop against a real Label Studio (PyPI, in .venv-label-studio, which tools/setup.sh makes):
artdet as the project's ML backend gives pre-annotations, the curator's annotations come back as a dataset
version, Label Studio's "Start training" trains a new model version; its exports read as the same dataset."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from artdet.v1 import artdet_pb2 as pb
from artdet.detector.annotation_formats import load_annotations
from artdet.detector.dataset import load_coco
from artdet.detector.local_images import LocalImages
from tests.conftest import PEOPLE_ART, ROOT, TOKENS, ServerProcess, needs_people_art, wait_for

LS_VENV = ROOT / ".venv-label-studio"
LS_BIN = LS_VENV / "bin" / "label-studio"
LS_KEY = "0123456789abcdef0123456789abcdef01234567"
IMAGES = 6  # imported into Label Studio
ANNOTATED = 4  # of them, by the curator
needs_label_studio = pytest.mark.skipif(not LS_BIN.is_file(), reason=".venv-label-studio is absent: run tools/setup.sh")
TINY = pb.TrainingParameters(arch="fasterrcnn_mobilenet_v3_large_320_fpn", stage1_epochs=1, stage2_epochs=1,
                             max_size=160, batch_size=2, max_iters_per_epoch=2, val_fraction=0.25)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """Label Studio on loopback with a throwaway user and API key, allowed to call a backend on loopback."""
    data = tmp_path_factory.mktemp("label-studio")
    port = _free_port()
    env = {**os.environ, "LABEL_STUDIO_USERNAME": "curator@example.org", "LABEL_STUDIO_PASSWORD": "throwaway-1234",
           "LABEL_STUDIO_USER_TOKEN": LS_KEY, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "false", "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "false",
           "LABEL_STUDIO_HOST": f"http://127.0.0.1:{port}", "LABEL_STUDIO_SENTRY_DSN": "",
           "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "", "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
           "LABEL_STUDIO_LATEST_VERSION_CHECK": "false", "DJANGO_DB": "sqlite"}
    log = (data / "label-studio.log").open("wb")
    process = subprocess.Popen([str(LS_BIN), "start", "--data-dir", str(data), "--internal-host", "127.0.0.1",
                                "--port", str(port), "--no-browser"], cwd=data, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            assert process.poll() is None, (data / "label-studio.log").read_text()[-3000:]
            return False

    wait_for(healthy, 240, "Label Studio to answer /health")
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def _people_art(folder: Path, count: int) -> tuple[Path, dict]:
    """The first `count` People-Art training images under their own names, and their COCO (file names flat)."""
    coco = json.loads((PEOPLE_ART / "train.json").read_text())
    images = coco["images"][:count]
    folder.mkdir(parents=True, exist_ok=True)
    for image in images:
        shutil.copy(PEOPLE_ART / image["file_name"], folder / Path(image["file_name"]).name)
        image["file_name"] = Path(image["file_name"]).name
    ids = {image["id"] for image in images}
    coco.update(images=images, annotations=[a for a in coco["annotations"] if a["image_id"] in ids])
    out = folder.parent / f"{folder.name}.json"
    out.write_text(json.dumps(coco))
    return out, coco


def _wait_job(connection, job_id: str, timeout: float = 600) -> pb.Job:
    def finished():
        job = connection.training().GetJob(pb.GetJobRequest(id=job_id), metadata=connection.metadata)
        return job if job.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED) else None
    job = wait_for(finished, timeout, f"job {job_id}")
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.error + job.log_tail
    return job


@needs_people_art
@needs_label_studio
def test_label_studio_round_trip(label_studio, tmp_path, torch_home):
    from artdet.tools.client import push_dataset

    # a first model for the project's class, trained by a job (tiny settings) so retraining has settings to reuse
    server = ServerProcess(tmp_path / "data", "--min-free-mb", "0", env={"TORCH_HOME": str(torch_home)}).start()
    try:
        admin = server.connect("admin")
        start, _ = _people_art(tmp_path / "start", 8)
        push_dataset(admin, "people", start, tmp_path / "start", progress=False)
        first = admin.training().StartJob(pb.StartJobRequest(dataset_name="people", parameters=TINY,
                                                             weights="coco"), metadata=admin.metadata)
        _wait_job(admin, first.id)
        admin.models().ActivateModel(pb.ModelRef(name="people", version=1), metadata=admin.metadata)

        curator_files, truth = _people_art(tmp_path / "curator", IMAGES)
        annotated = truth["images"][:ANNOTATED]
        plan = {"url": label_studio, "api_key": LS_KEY, "backend_url": server.console_url + "label-studio",
                "backend_token": TOKENS["admin"], "backend_extra_params": {"score_threshold": 0.05},
                "images": [str(tmp_path / "curator" / image["file_name"]) for image in truth["images"]],
                "original_sizes": {image["file_name"]: [image["width"], image["height"]] for image in annotated},
                "annotations": {image["file_name"]: [
                    {"label": "person", "x": 100 * a["bbox"][0] / image["width"],
                     "y": 100 * a["bbox"][1] / image["height"], "width": 100 * a["bbox"][2] / image["width"],
                     "height": 100 * a["bbox"][3] / image["height"]}
                    for a in truth["annotations"] if a["image_id"] == image["id"]] for image in annotated}}
        (tmp_path / "plan.json").write_text(json.dumps(plan))
        exports = tmp_path / "exports"
        exports.mkdir()
        subprocess.run([str(LS_VENV / "bin" / "python"), str(ROOT / "tests" / "label_studio_driver.py"),
                        str(tmp_path / "plan.json"), str(exports)], check=True, timeout=600)
        steps = json.loads((exports / "steps.json").read_text())
        assert steps["imported"] == IMAGES and steps["backend"]["model_version"] == "people:v1"
        assert len(steps["annotated"]) == ANNOTATED

        # pre-annotations: every task's, from the active model, the boxes Detect gives at the project's threshold
        client = server.connect("client")
        assert len(steps["predictions"]) == IMAGES
        local = LocalImages(tmp_path / "curator")  # Label Studio renames uploads; see local_images.py
        names = {local.find(reference)[0]: reference for reference in steps["predictions"]}
        for image in truth["images"]:
            (prediction,) = steps["predictions"][names[image["file_name"]]]
            assert prediction["model_version"] == "people:v1"
            detected = client.detection().Detect(pb.DetectRequest(
                image=(tmp_path / "curator" / image["file_name"]).read_bytes(), score_threshold=0.05),
                metadata=client.metadata)
            assert len(prediction["result"]) == len(detected.detections)
            for region, det in zip(prediction["result"], detected.detections):
                assert region["value"]["rectanglelabels"] == ["person"]
                assert region["value"]["x"] == pytest.approx(100 * det.box.x1 / image["width"], abs=1e-3)
                assert region["value"]["height"] == pytest.approx(100 * (det.box.y2 - det.box.y1) / image["height"],
                                                                 abs=1e-3)

        # "Start training": the annotations came back as a dataset version and trained a new model version
        name = f"label-studio-{steps['project']}"

        def pushed():
            listed = admin.datasets().ListDatasets(pb.ListDatasetsRequest(name=name), metadata=admin.metadata)
            return listed.datasets[0] if listed.datasets else None
        dataset = wait_for(pushed, 120, "the project's annotations as a dataset")
        assert dataset.statistics.images == ANNOTATED
        assert dataset.statistics.boxes == sum(len(boxes) for boxes in plan["annotations"].values())

        def job_of_dataset():
            jobs = admin.training().ListJobs(pb.ListJobsRequest(), metadata=admin.metadata).jobs
            return next((job for job in jobs if job.dataset_name == name), None)
        job = _wait_job(admin, wait_for(job_of_dataset, 60, "the retraining job").id)
        assert job.model_name == "people" and job.model_version == 2
        assert json.loads(job.config_json)["max_size"] == TINY.max_size  # the first model's settings

        # the project's exports, as the curator would download them, read as the same dataset
        kept = {image["id"] for image in annotated}
        expected = load_coco({**truth, "images": annotated, "annotations": [
            a for a in truth["annotations"] if a["image_id"] in kept]}, tmp_path / "curator").to_coco()
        with zipfile.ZipFile(exports / "export-coco.zip") as archive:
            archive.extractall(exports / "coco")
        for export in ("export.json", "export-min.json", "coco/result.json"):
            got = load_annotations(exports / export, tmp_path / "curator").to_coco()
            assert sorted(i["file_name"] for i in got["images"]) == sorted(i["file_name"] for i in annotated), export
            names = {i["id"]: i["file_name"] for i in got["images"]}
            want = {i["id"]: i["file_name"] for i in expected["images"]}
            boxes = sorted((names[a["image_id"]], *a["bbox"]) for a in got["annotations"])
            truth_boxes = sorted((want[a["image_id"]], *a["bbox"]) for a in expected["annotations"])
            assert [b[0] for b in boxes] == [b[0] for b in truth_boxes], export
            assert np.allclose([b[1:] for b in boxes], [b[1:] for b in truth_boxes], atol=0.01), export
    finally:
        server.stop()
