"""The command line as a newcomer meets it (issue 11): no upload of a dataset whose images are not there,
one detect output, folders that survive a bad file, help that shows choices and defaults."""

from __future__ import annotations

import json
import shutil

from tests.conftest import artdet


def test_push_with_a_wrong_images_root_names_the_missing_files_before_sending(overfit_run, tmp_path):
    annotations = overfit_run.parent / "train.json"
    # nothing listens on port 9: a check made after connecting would end in UNAVAILABLE instead
    result = artdet("push", annotations, "--name", "shapes", "--images", tmp_path, "--server", "127.0.0.1:9",
                    check=False)
    assert result.returncode == 2
    assert "16 of 16 images that train.json references are not under" in result.stderr
    assert "is --images the folder" in result.stderr and "UNAVAILABLE" not in result.stderr


def test_detect_folder_skips_unreadable_files_and_writes_the_rest(overfit_export, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for record in overfit_export["data"].images[:2]:
        shutil.copy(record.path, folder / record.path.name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    model = overfit_export["path"]

    result = artdet("detect", folder, "--model", model, "--coco", tmp_path / "pre.json", "--threshold", "0.3")
    assert "skipped broken.jpg" in result.stderr and "1 of 3 images skipped" in result.stderr
    coco = json.loads((tmp_path / "pre.json").read_text())
    assert sorted(im["file_name"] for im in coco["images"]) == sorted(r.path.name for r in
                                                                      overfit_export["data"].images[:2])
    assert artdet("detect", folder, "--model", model, "--strict", check=False).returncode == 2

    for good in folder.glob("*.jpg"):
        if good.name != "broken.jpg":
            good.unlink()
    none_read = artdet("detect", folder, "--model", model, check=False)
    assert none_read.returncode == 2 and "none of the 1 images" in none_read.stderr


def test_detect_prints_lines_or_says_nothing_was_found(overfit_export):
    image = overfit_export["data"].images[0].path
    found = artdet("detect", image, "--model", overfit_export["path"], "--threshold", "0.3")
    assert found.stdout.splitlines() and all(line.split()[0] in ("circle", "square")
                                             for line in found.stdout.splitlines())
    assert f"model {overfit_export['path'].name}" in found.stderr
    empty = artdet("detect", image, "--model", overfit_export["path"], "--threshold", "1")
    assert empty.stdout.strip() == "no detections above 1.00 (use --threshold)"
    payload = json.loads(artdet("detect", image, "--model", overfit_export["path"], "--json").stdout)
    assert set(payload) == {"detections", "width", "height", "model", "model_version", "time_ms"}


def test_validate_reports_counts_or_every_problem_with_its_id(overfit_run, tmp_path):
    annotations = overfit_run.parent / "train.json"
    valid = artdet("validate", annotations)
    assert valid.stdout.startswith("valid: 16 images") and "circle" in valid.stdout
    statistics = json.loads(artdet("validate", annotations, "--json").stdout)
    assert statistics["images"] == 16 and isinstance(statistics["boxes"], int)

    coco = json.loads(annotations.read_text())
    coco["annotations"][0]["bbox"] = [5, 5, -3, 10]
    coco["annotations"][1]["category_id"] = 999
    broken = annotations.parent / "broken.json"
    broken.write_text(json.dumps(coco))
    result = artdet("validate", broken, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"annotation {coco['annotations'][0]['id']}" in result.stderr
    assert f"annotation {coco['annotations'][1]['id']}" in result.stderr and "999" in result.stderr
