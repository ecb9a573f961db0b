"""The transfer-learning experiment's scene generator and a tiny run of its plumbing and report."""

from __future__ import annotations

import json
import random

import numpy as np
from PIL import Image

from artdet.detector.dataset import load_coco
from artdet.tools.experiments.scenes import PAINTING_CLASSES, PHOTO_CLASSES, render_scene, write_scenes
from artdet.tools.experiments.transfer import TWO_STAGE_FORMS, VARIANTS, Settings, make_data, pretrain, run_variant
from tests.conftest import artdet


def test_scenes_have_exact_boxes_and_distinct_looks(tmp_path):
    photo = write_scenes(tmp_path, "photo", 12, size=160, seed=4, name="photo.json")
    painting = write_scenes(tmp_path, "painting", 12, size=160, seed=4, name="painting.json")
    for path, classes in ((photo, PHOTO_CLASSES), (painting, PAINTING_CLASSES)):
        dataset = load_coco(path)  # the validator accepts every box: inside the image, positive size
        assert dataset.class_names == list(classes)
        assert dataset.statistics()["boxes"] >= 12
    assert write_scenes(tmp_path / "again", "photo", 12, size=160, seed=4, name="photo.json").read_text() == \
        photo.read_text()
    # each box hugs its object: on a photo scene the pixels just outside a lone object are background-like
    image, objects = render_scene(random.Random(1), "photo", 160, 160, ("square",), max_objects=1)
    x, y, w, h = objects[0][1]
    pixels = np.asarray(image).astype(int)
    inside = pixels[int(y + h / 2), int(x + 3)]
    outside = pixels[int(y + h / 2), max(0, int(x) - 3)]
    assert np.abs(inside - outside).sum() > 30
    # the painting look: posterised (few levels per channel) unlike the photo look
    photo_levels = len(np.unique(np.asarray(Image.open(tmp_path / "images" / "photo" / "00001.jpg"))[..., 0]))
    paint = np.asarray(render_scene(random.Random(2), "painting", 160, 160, PAINTING_CLASSES)[0])
    assert len(np.unique(paint[..., 0])) <= 16 < photo_levels


def test_the_held_out_engraving_look_has_no_colour_and_its_own_data(tmp_path):
    """The look and the size `auto` was never calibrated on (issue 12): ink on paper, generated from a seed the
    calibrated cells do not use."""
    data = make_data(tmp_path, Settings.tiny(), ("middle-engraving",))
    engraving = load_coco(data["middle-engraving"])
    assert len(engraving.images) == Settings.tiny().middle and engraving.class_names == list(PAINTING_CLASSES)
    assert {"similar-val", "painting-val", "engraving-val"} <= set(data)  # the similarity measures' looks too
    pixels = np.asarray(Image.open(engraving.images[0].path)).astype(int)
    assert np.abs(pixels[..., 0] - pixels[..., 2]).mean() < 30  # sepia paper and ink, no palette
    painting = np.asarray(render_scene(random.Random(2), "painting", 160, 160, PAINTING_CLASSES)[0]).astype(int)
    assert np.abs(painting[..., 0] - painting[..., 2]).mean() > np.abs(pixels[..., 0] - pixels[..., 2]).mean()
    paintings = make_data(tmp_path / "paintings", Settings.tiny(), ("small-painting", "middle-painting"))
    first = [load_coco(paintings[cell]).images[0].path.read_bytes() for cell in ("small-painting", "middle-painting")]
    assert first[0] != first[1]  # the held-out size is not a superset of a calibrated cell's images


def test_the_fresco_look_is_faded_low_contrast_plaster_with_its_own_data(tmp_path):
    """The second held-out look (issue 12), judged after the engraving cells changed auto's similarity rule."""
    data = make_data(tmp_path, Settings.tiny(), ("small-fresco",))
    fresco = load_coco(data["small-fresco"])
    assert fresco.class_names == list(PAINTING_CLASSES) and "small-fresco-val" in data
    fresco_pixels = np.asarray(render_scene(random.Random(2), "fresco", 160, 160, PAINTING_CLASSES)[0]).astype(int)
    painting = np.asarray(render_scene(random.Random(2), "painting", 160, 160, PAINTING_CLASSES)[0]).astype(int)
    assert fresco_pixels.std() < painting.std() / 2  # faded, low contrast
    assert fresco_pixels.min() > 40  # chalky: no deep darks
    assert np.abs(fresco_pixels[..., 0] - fresco_pixels[..., 2]).mean() > 5  # still a (warm) palette, not ink


def test_tiny_transfer_experiment_reports_every_variant(tmp_path):
    out = tmp_path / "transfer"
    result = artdet("experiment", "transfer", "--tiny", "--out", out, "--cells", "small-painting", timeout=1200)
    report = json.loads((out / "transfer.json").read_text())
    cell = report["cells"]["small-painting"]
    assert tuple(cell["variants"]) == VARIANTS
    # each two-stage form trained with its own settings (issue 12's grid)
    configs = {form: json.loads((out / "runs" / "small-painting" / form / "seed0" / "config.json").read_text())
               for form in TWO_STAGE_FORMS}
    assert configs["two-stage"]["trainable_backbone_layers"] is None  # the whole network
    assert configs["two-stage-top3"]["trainable_backbone_layers"] == 3
    assert (configs["two-stage-decay"]["layer_decay"], configs["two-stage-ema"]["ema_decay"]) == (0.7, 0.99)
    assert all(configs[f]["stage1_epochs"] >= configs["two-stage-sixth"]["stage1_epochs"]
               >= configs["two-stage"]["stage1_epochs"] >= 1 for f in ("two-stage-third", "two-stage-top3"))
    # auto's runs are the measured runs that train exactly as it decided, never trained twice
    auto = cell["variants"]["auto"]["runs"]
    chosen = {run["same_training_as"] for run in auto}
    assert chosen == {cell["auto_choice"][0]}
    assert [run["map"] for run in auto] == [run["map"] for run in cell["variants"][chosen.pop()]["runs"]]
    assert not (out / "runs" / "small-painting" / "auto" / "seed0" / "metrics.json").exists()
    for variant in cell["variants"].values():
        assert {"map_mean", "map_std", "ap50_mean", "per_class_ap_mean", "seconds_mean"} <= set(variant)
        assert len(variant["runs"]) == 2
    assert cell["auto_choice"] and cell["auto_reasons"]
    # the verdicts follow from the measured means and spreads
    trained = {k: v for k, v in cell["variants"].items() if k != "zero-shot"}
    best = max(trained, key=lambda k: trained[k]["map_mean"])
    top, auto, scratch = trained[best], cell["variants"]["auto"], cell["variants"]["scratch"]
    assert cell["best"] == best
    assert cell["pretrained_over_scratch"] == round(top["map_mean"] / max(scratch["map_mean"], 1e-6), 1)
    assert cell["auto_within_one_spread_of_best"] is (
        auto["map_mean"] >= top["map_mean"] - max(top["map_std"], auto["map_std"]))
    assert "star" in cell["variants"]["full"]["per_class_ap_mean"]
    assert set(report["similarity"]) == {"A", "similar", "painting"}
    assert all(0.0 <= v <= 1.0 for look in report["similarity"].values() for v in look.values())
    assert (out / "transfer.png").stat().st_size > 1000 and Image.open(out / "transfer.png").size[0] > 200
    assert "| small-painting |" in result.stdout
    # a later invocation that measures one variant again keeps everything else in the report
    artdet("experiment", "transfer", "--tiny", "--out", out, "--cells", "small-painting", "--variants", "zero-shot")
    again = json.loads((out / "transfer.json").read_text())["cells"]["small-painting"]
    assert set(again["variants"]) == set(cell["variants"])
    assert again["variants"]["full"] == cell["variants"]["full"]


def test_auto_trains_itself_when_no_measured_variant_trains_as_it_decided(tmp_path):
    """The real-size two-stage plan and the full plan auto chooses on paintings differ, so auto trains."""
    settings = Settings.tiny()
    data = make_data(tmp_path, settings, ("small-painting",))
    pretrained = pretrain(tmp_path, data, settings)
    measured = {"two-stage": {"runs": [run_variant("two-stage", "small-painting", 0, pretrained, data, settings,
                                                   tmp_path / "runs")]}}
    auto = run_variant("auto", "small-painting", 0, pretrained, data, settings, tmp_path / "runs", measured)
    assert "same_training_as" not in auto and auto["auto_choice"] == "full"
    assert (tmp_path / "runs" / "small-painting" / "auto" / "seed0" / "metrics.json").is_file()


def test_tiny_active_learning_experiment_reports_every_strategy(tmp_path):
    """`artdet experiment active --tiny`: the plumbing of issue 14's experiment (its figures are in the README)."""
    out = tmp_path / "active"
    result = artdet("experiment", "active", "--tiny", "--out", out, timeout=1200)
    report = json.loads((out / "active.json").read_text())
    settings = report["settings"]
    labels = [settings["start"] + settings["add"] * r for r in range(settings["rounds"] + 1)]
    for strategy in ("random", "uncertainty", "uncertainty-diversity"):
        (curve,) = report["curves"][strategy]
        assert [point["labels"] for point in curve] == labels
        added = [i for point in curve[:-1] for i in point["added"]]
        assert len(set(added)) == len(added) == settings["add"] * settings["rounds"]  # never an image twice
        assert report["summary"][strategy]["labels"] == labels
    # every strategy starts from the same labelled images, so round 0 trains the same model
    assert len({report["curves"][s][0][0]["map"] for s in report["curves"]}) == 1
    assert "labels to reach random's final mAP" in result.stdout and (out / "active.png").is_file()
