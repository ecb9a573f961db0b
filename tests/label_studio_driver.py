"""A curator's session in Label Studio, through label-studio-sdk: run by Label Studio's own virtual environment
(tests/test_label_studio.py starts it), so nothing of artdet is imported here.

usage: python label_studio_driver.py PLAN.json OUT_DIR
PLAN: {"url", "api_key", "backend_url", "backend_token", "images": [paths], "annotations": {file name: [
       {"label", "x", "y", "width", "height"} in percent]}, "original_sizes": {file name: [w, h]}}
Writes OUT_DIR/steps.json (what each step saw) and the project's exports (JSON, JSON_MIN, COCO).
"""

import json
import sys
import time
from pathlib import Path

import requests
from label_studio_sdk import LabelStudio

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
          '<Label value="person"/></RectangleLabels></View>')


def main(plan_path: str, out: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    out_dir = Path(out)
    steps = {}
    ls = LabelStudio(base_url=plan["url"], api_key=plan["api_key"])
    auth = {"Authorization": f"Token {plan['api_key']}"}
    project = ls.projects.create(title="artdet round trip", label_config=CONFIG)
    files = {f"file{i}": (Path(p).name, open(p, "rb"), "image/jpeg") for i, p in enumerate(plan["images"])}
    imported = requests.post(f"{plan['url']}/api/projects/{project.id}/import", headers=auth, files=files, timeout=120)
    imported.raise_for_status()
    steps["imported"] = imported.json()["task_count"]
    backend = requests.post(f"{plan['url']}/api/ml", headers=auth, timeout=60, json={
        "url": plan["backend_url"], "project": project.id, "title": "artdet", "auth_method": "BASIC_AUTH",
        "basic_auth_user": "label-studio", "basic_auth_pass": plan["backend_token"],
        "extra_params": plan.get("backend_extra_params", {})})
    backend.raise_for_status()
    backend = backend.json()
    steps["backend"] = {"state": backend.get("state"), "model_version": backend.get("model_version")}
    tasks = list(ls.tasks.list(project=project.id))
    ls.actions.create(id="retrieve_tasks_predictions", project=project.id,
                      selected_items={"all": True, "excluded": []})
    steps["predictions"] = {}
    for task in tasks:
        predictions = ls.predictions.list(task=task.id)
        steps["predictions"][task.data["image"]] = [
            {"model_version": p.model_version, "score": p.score, "result": p.result} for p in predictions]
    steps["annotated"] = []
    for task in tasks:
        name = next((n for n in plan["annotations"] if task.data["image"].endswith("-" + n.replace(" ", "_"))), None)
        if name is None:
            continue
        width, height = plan["original_sizes"][name]
        result = [{"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": width,
                   "original_height": height, "image_rotation": 0,
                   "value": {"x": box["x"], "y": box["y"], "width": box["width"], "height": box["height"],
                             "rotation": 0, "rectanglelabels": [box["label"]]}} for box in plan["annotations"][name]]
        ls.annotations.create(id=task.id, result=result, was_cancelled=False, ground_truth=False)
        steps["annotated"].append(name)
    started = time.time()
    ls.ml.train(id=backend["id"])
    steps["train_seconds"] = round(time.time() - started, 2)
    for export_type, name in (("JSON", "export.json"), ("JSON_MIN", "export-min.json"), ("COCO", "export-coco.zip")):
        data = b"".join(ls.projects.exports.download_sync(id=project.id, export_type=export_type))
        (out_dir / name).write_bytes(data)
    steps["project"] = project.id
    (out_dir / "steps.json").write_text(json.dumps(steps, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
