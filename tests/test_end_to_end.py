"""On real paintings: a short two-stage run from COCO weights in the TORCH_HOME cache, export, detect."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.conftest import PEOPLE_ART, TINY_ARCH, artdet, needs_people_art


@needs_people_art
def test_people_art_two_stage_train_export_detect(tmp_path, torch_home):
    run = tmp_path / "run"
    artdet("train", "--train", PEOPLE_ART / "train.json", "--val", PEOPLE_ART / "val.json", "--arch", TINY_ARCH,
           "--weights", "coco", "--out", run, "--strategy", "two-stage", "--stage1-epochs", "1",
           "--stage2-epochs", "1", "--max-size", "256", "--seed", "0", "--workers", "2", "--quiet",
           env={"TORCH_HOME": str(torch_home)})
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["starting_point"]["kind"] == "coco"
    assert metrics["warm_started_classes"] == {"person": "person"}
    assert metrics["baseline"]["images"] == 36
    assert [e["stage"] for e in metrics["epochs"]] == ["feature-extraction", "fine-tuning"]
    assert metrics["strategy"]["stages"][1]["backbone_layers"] == 6  # stage 2: the whole network
    assert set(metrics["per_class_ap"]) == {"person"}
    assert (run / "config.json").is_file() and (run / "checkpoints" / "best.pt").is_file()

    model = tmp_path / "people.onnx"
    artdet("export", run, "--out", model)
    assert model.is_file()

    painting = PEOPLE_ART / json.loads((PEOPLE_ART / "val.json").read_text())["images"][0]["file_name"]
    result = artdet("detect", painting, "--model", model, "--json", "--draw", tmp_path / "drawn.png",
                    "--threshold", "0.0")
    payload = json.loads(result.stdout)
    width, height = Image.open(painting).size
    assert (payload["width"], payload["height"]) == (width, height)
    detections = payload["detections"]
    assert detections, "nothing found on a painting at threshold 0 (the export keeps scores >= 0.05)"
    for detection in detections:  # labelled boxes in the painting's own pixels, scores as the export keeps them
        x1, y1, x2, y2 = detection["box"]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, detection
        assert detection["label"] == "person" and 0.05 <= detection["score"] <= 1.0, detection
    assert [d["score"] for d in detections] == sorted((d["score"] for d in detections), reverse=True)
    assert Image.open(tmp_path / "drawn.png").size == (width, height)

    evaluated = json.loads(artdet("eval", model, "--ann", PEOPLE_ART / "val.json", "--quiet").stdout)
    assert evaluated["images"] == 36 and set(evaluated["per_class_ap"]) == {"person"}
    # the ONNX model scores on val.json as the run scored its best epoch there, and finds some persons
    # (so its labels map back to People-Art's category id); this tiny run's mAP is small in absolute terms
    assert evaluated["map"] == pytest.approx(metrics["final"]["map"], abs=0.002)
    assert evaluated["ap50"] > 0
