"""The training configuration's one schema: ranges and choices checked alike for the CLI, the RPC and config files."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest

from artdet.v1 import artdet_pb2 as pb
from artdet.detector.config import TrainConfig
from artdet.detector.errors import InvalidArgument
from artdet.server.store import DatasetRow, JobRow
from artdet.server.training_service import TrainingServicer, config_from_parameters
from tests.conftest import ROOT

INT32_MAX = 2**31 - 1
# TrainConfig's defaults as they were before the schema; the schema must not move any of them
DEFAULTS = {
    "train": "", "val": None, "images": None, "val_fraction": 0.2, "max_size": None,
    "arch": "fasterrcnn_mobilenet_v3_large_320_fpn", "weights": "coco", "strategy": "two-stage",
    "stage1_epochs": 1, "stage2_epochs": 8, "trainable_backbone_layers": None, "stage1_train_rpn": True,
    "stage1_train_box_head": True, "auto_size_threshold": 500, "auto_similarity_threshold": 0.8,
    "optimizer": "sgd", "lr": 0.01, "stage2_lr_factor": 0.1, "layer_decay": 1.0, "ema_decay": 0.0,
    "momentum": 0.9, "weight_decay": 1e-4,
    "warmup_iters": 50, "schedule": "cosine", "step_milestones": (0.67, 0.89), "grad_clip": 10.0,
    "batch_size": 4, "workers": 2, "aspect_ratio_grouping": True, "amp": True, "device": "auto", "seed": 0,
    "patience": 0, "max_iters_per_epoch": None,
    "augment": {"enabled": True, "hflip": 0.5, "scale_crop": 0.5, "color_jitter": 0.5, "grayscale": 0.1,
                "blur": 0.1, "jpeg": 0.2, "posterize": 0.1, "clahe": 0.1},
    "eval_score_threshold": 0.05, "detections_per_image": 100, "rpn_pre_nms_top_n_train": None,
    "rpn_post_nms_top_n_train": None, "box_batch_size_per_image": None,
}


# a TrainingServicer over stand-ins: StartJob's checks without a database, a worker or torch ------------------

class FakeContext:
    def __init__(self):
        self.code = self.details = None

    def abort(self, code, details):
        self.code, self.details = code, details
        raise Exception()  # what grpc's context.abort() raises

    def is_active(self):
        return True


class FakeStore:
    def __init__(self, root: Path):
        self.root = root

    def get_dataset(self, name, version=0):
        return DatasetRow(name=name, version=version or 1, sha256="", created_at=0.0, statistics={},
                          path=self.root / "datasets" / name / "1")

    def get_model(self, name, version):
        return SimpleNamespace(name=name, version=version, job_id="job-of-base",
                               card={"arch": "fasterrcnn_mobilenet_v3_large_320_fpn"})

    def run_dir(self, job_id):
        return self.root / "runs" / job_id


class FakeRunner:
    def __init__(self, root: Path):
        self.root = root
        self.submitted: list[dict] = []

    def submit(self, dataset, model_name, config, base):
        self.submitted.append(config)
        return JobRow(id="j1", state="queued", dataset_name=dataset.name, dataset_version=dataset.version,
                      model_name=model_name, model_version=0, config=config, base_model=base, error="",
                      created_at=0.0, started_at=0.0, finished_at=0.0, restarts=0, run_dir=self.root / "runs" / "j1")


def _servicer(root: Path) -> TrainingServicer:
    return TrainingServicer(FakeStore(root), FakeRunner(root), SimpleNamespace(active_version=lambda name: 2))


def start_job(root: Path, parameters: pb.TrainingParameters | None = None, **request) -> tuple:
    """(status code or None, details, submitted configs)."""
    servicer = _servicer(root)
    context = FakeContext()
    request = pb.StartJobRequest(dataset_name="shapes", parameters=parameters or pb.TrainingParameters(), **request)
    try:
        servicer.StartJob(request, context)
    except Exception as exc:  # noqa: BLE001
        if context.code is None:
            raise
        assert type(exc) is Exception
    return context.code, context.details, servicer.runner.submitted


# 8: validation is torch-free ---------------------------------------------------------------------------------

def test_arch_table_is_torch_free_and_matches_the_architectures():
    from artdet.detector.architectures import ARCHITECTURES
    from artdet.detector.config import ARCH_BACKBONE_STAGES, ARCH_NAMES

    assert set(ARCH_NAMES) == set(ARCHITECTURES)
    assert {name: ARCHITECTURES[name].num_backbone_stages for name in ARCH_NAMES} == ARCH_BACKBONE_STAGES


def test_start_job_validation_does_not_import_torch(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from artdet.v1 import artdet_pb2 as pb
        from artdet.server.training_service import config_from_parameters
        from tests.test_config import start_job

        params = pb.TrainingParameters(arch="fasterrcnn_resnet50_fpn", lr=0.02, trainable_backbone_layers=5,
                                       extra={{"warmup_iters": "5", "step_milestones": "0.5,0.8"}})
        config = config_from_parameters(params, Path("a.json"), Path("images"))
        config.validate()
        code, details, submitted = start_job(Path({str(tmp_path)!r}), params)
        assert code is None and len(submitted) == 1, details
        code, details, submitted = start_job(Path({str(tmp_path)!r}), pb.TrainingParameters(arch="yolo"))
        assert code is not None and "arch" in details and not submitted
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
        assert not loaded, loaded[:5]
        print("torch-free")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "torch-free" in result.stdout, result.stderr[-3000:]


# 9: every parameter has a range, checked once --------------------------------------------------------------

ABSURD = [
    ("lr", dict(lr=math.nan), "parameters.lr: nan is not a finite number"),
    ("lr", dict(lr=math.inf), "parameters.lr: inf is not a finite number"),
    ("lr", dict(lr=1e300), "parameters.lr: 1e+300 is not in (0, 10]"),
    ("lr", dict(lr=0.0), "parameters.lr: 0.0 is not in (0, 10]"),
    ("stage2_lr_factor", dict(stage2_lr_factor=math.nan), "parameters.stage2_lr_factor: nan is not a finite"),
    ("stage2_lr_factor", dict(stage2_lr_factor=-10.0), "parameters.stage2_lr_factor: -10.0 is not in"),
    ("max_size", dict(max_size=INT32_MAX), f"parameters.max_size: {INT32_MAX} is not in [64, 4096]"),
    ("batch_size", dict(batch_size=INT32_MAX), f"parameters.batch_size: {INT32_MAX} is not in [1, 256]"),
    ("stage1_epochs", dict(stage1_epochs=INT32_MAX), "parameters.stage1_epochs:"),
    ("stage2_epochs", dict(stage2_epochs=INT32_MAX), "parameters.stage2_epochs:"),
    ("patience", dict(patience=-1), "parameters.patience: -1 is not in"),
    ("max_iters_per_epoch", dict(max_iters_per_epoch=-3), "parameters.max_iters_per_epoch: -3 is not in"),
    ("seed", dict(seed=-1), "parameters.seed: -1 is not in"),
    ("trainable_backbone_layers", dict(trainable_backbone_layers=-1), "parameters.trainable_backbone_layers: -1"),
    ("trainable_backbone_layers", dict(trainable_backbone_layers=99), "parameters.trainable_backbone_layers: 99"),
    ("val_fraction", dict(val_fraction=-0.5), "parameters.val_fraction: -0.5 is not in (0, 1)"),
    ("val_fraction", dict(val_fraction=2.0), "parameters.val_fraction: 2.0 is not in (0, 1)"),
    ("val_fraction", dict(val_fraction=math.nan), "parameters.val_fraction: nan is not a finite number in (0, 1)"),
    ("strategy", dict(strategy="most"), "parameters.strategy: unknown 'most'"),
    ("optimizer", dict(optimizer="lbfgs"), "parameters.optimizer: unknown 'lbfgs'"),
    ("workers", dict(extra={"workers": "1000"}), "parameters.extra['workers']: 1000 is not in [0, 64]"),
    ("workers", dict(extra={"workers": "-5"}), "parameters.extra['workers']: -5 is not in [0, 64]"),
    ("grad_clip", dict(extra={"grad_clip": "nan"}), "parameters.extra['grad_clip']: 'nan' is not a finite number"),
    ("detections_per_image", dict(extra={"detections_per_image": "-1"}),
     "parameters.extra['detections_per_image']: -1 is not in"),
    ("momentum", dict(extra={"momentum": "2"}), "parameters.extra['momentum']: 2.0 is not in [0, 1]"),
    ("warmup_iters", dict(extra={"warmup_iters": str(INT32_MAX)}), "parameters.extra['warmup_iters']:"),
    ("step_milestones", dict(extra={"step_milestones": "0.5,7"}), "parameters.extra['step_milestones'][1]: 7.0"),
    ("auto_similarity_threshold", dict(extra={"auto_similarity_threshold": "-1"}),
     "parameters.extra['auto_similarity_threshold']: -1.0 is not in [0, 1]"),
]


@pytest.mark.parametrize("name,values,expected", ABSURD, ids=[f"{a[0]}-{i}" for i, a in enumerate(ABSURD)])
def test_start_job_refuses_absurd_parameters(tmp_path, name, values, expected):
    code, details, submitted = start_job(tmp_path, pb.TrainingParameters(**values))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert expected in details and not submitted
    assert str(tmp_path) not in details


def test_trainable_backbone_layers_follow_the_architecture(tmp_path):
    code, details, _ = start_job(tmp_path, pb.TrainingParameters(arch="fasterrcnn_resnet50_fpn",
                                                                 trainable_backbone_layers=6))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "parameters.trainable_backbone_layers: 6 is not in [0, 5] for fasterrcnn_resnet50_fpn" in details
    for arch, layers in (("fasterrcnn_resnet50_fpn", 5), ("fasterrcnn_mobilenet_v3_large_fpn", 6),
                         ("fasterrcnn_mobilenet_v3_large_320_fpn", 0)):
        code, details, submitted = start_job(tmp_path, pb.TrainingParameters(arch=arch,
                                                                             trainable_backbone_layers=layers))
        assert code is None and submitted[-1]["trainable_backbone_layers"] == layers, details


def test_start_job_accepts_sensible_parameters_unchanged(tmp_path):
    params = pb.TrainingParameters(arch="fasterrcnn_mobilenet_v3_large_320_fpn", stage1_epochs=50, stage2_epochs=50,
                                   max_size=128, batch_size=2, lr=10.0, val_fraction=0.5,
                                   extra={"workers": "0", "step_milestones": "0.5,0.75", "amp": "false",
                                          "max_iters_per_epoch": "0", "grad_clip": "0"})
    code, details, submitted = start_job(tmp_path, params)
    assert code is None, details
    config = submitted[0]
    assert (config["workers"], config["step_milestones"], config["amp"], config["lr"]) == (0, (0.5, 0.75), False, 10.0)


def test_every_parameter_declares_its_range_once():
    from artdet.detector.config import AUGMENT_SCHEMA, TRAIN_SCHEMA

    assert set(TRAIN_SCHEMA) == {f.name for f in dataclasses.fields(TrainConfig)}
    for spec in [*TRAIN_SCHEMA.values(), *AUGMENT_SCHEMA.values()]:
        assert spec.help, spec.name
        if spec.kind in ("int", "float", "floats"):
            assert spec.low is not None and spec.high is not None, spec.name
        if spec.name in ("arch", "strategy", "optimizer", "schedule"):
            assert spec.choices, spec.name


def test_defaults_are_unchanged_and_valid():
    config = TrainConfig()
    assert config.to_dict() == DEFAULTS
    config.train = "train.json"
    config.validate()


@pytest.mark.parametrize("text,expected", [
    ('"lr": NaN', "lr: nan is not a finite number in (0, 10]"),
    ('"lr": Infinity', "lr: inf is not a finite number in (0, 10]"),
    ('"batch_size": 1e9', "batch_size: 1000000000.0 is not an int"),
    ('"batch_size": true', "batch_size: True is not an int"),
    ('"amp": 1', "amp: 1 is not a bool"),
    ('"workers": "2"', "workers: '2' is not an int"),
    ('"augment": {"hflip": 2}', "augment.hflip: 2 is not in [0, 1]"),
    ('"step_milestones": [0.5, "x"]', "step_milestones[1]: 'x' is not a float"),
    ('"step_milestones": 0.5', "step_milestones: 0.5 is not a list of floats"),
    ('"trainable_backbone_layers": 6, "arch": "fasterrcnn_resnet50_fpn"',
     "trainable_backbone_layers: 6 is not in [0, 5] for fasterrcnn_resnet50_fpn"),
])
def test_config_files_are_checked_by_the_same_schema(text, expected):
    config = TrainConfig.from_dict(json.loads('{"train": "a.json", ' + text + "}"))
    with pytest.raises(InvalidArgument) as caught:
        config.validate()
    assert expected in str(caught.value)


def test_config_file_with_unknown_keys_is_invalid_argument():
    with pytest.raises(InvalidArgument, match="unknown training configuration keys"):
        TrainConfig.from_dict({"train": "a.json", "lr2": 1})
    with pytest.raises(InvalidArgument, match="augment"):
        TrainConfig.from_dict({"train": "a.json", "augment": {"hflip": 0.5, "mosaic": 1.0}})
    with pytest.raises(InvalidArgument, match="augment"):
        TrainConfig.from_dict({"train": "a.json", "augment": 3})


# 10: the `extra` map ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra,expected", [
    ({"k" * 100_000: "1"}, "parameters.extra: a key of 100000 characters"),
    ({"warmup_iters": "1" * 100_000}, "parameters.extra['warmup_iters']: a value of 100000 characters"),
    ({f"option{i}": "1" for i in range(5000)}, "parameters.extra: 5000 entries"),
    ({"train": "/etc/passwd"}, "parameters.extra: unknown or server-owned option 'train'"),
    ({"weights": "/etc/passwd"}, "server-owned option 'weights'"),
    ({"device": "cuda:3"}, "server-owned option 'device'"),
    ({"augment": "false"}, "server-owned option 'augment'"),
    ({"momentum": "inf"}, "parameters.extra['momentum']: 'inf' is not a finite number"),
    ({"lr": "1e999"}, "parameters.extra['lr']: '1e999' is not a finite number"),
    ({"step_milestones": "0.5,nan"}, "parameters.extra['step_milestones']: '0.5,nan' is not"),
    ({"step_milestones": ""}, "parameters.extra['step_milestones']: '' is not"),
    ({"amp": "yes"}, "parameters.extra['amp']: 'yes' is not a valid bool"),
    ({"warmup_iters": "1.5"}, "parameters.extra['warmup_iters']: '1.5' is not a valid int"),
    ({"warmup_iters": "abc"}, "parameters.extra['warmup_iters']: 'abc' is not a valid int"),
    ({"box_batch_size_per_image": "0"}, "parameters.extra['box_batch_size_per_image']: 0 is not in"),
])
def test_extra_map_is_bounded_and_parsed_strictly(tmp_path, extra, expected):
    code, details, submitted = start_job(tmp_path, pb.TrainingParameters(extra=extra))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert expected in details and not submitted
    assert len(details) < 400


def test_config_from_parameters_raises_invalid_argument_for_bad_extra():
    with pytest.raises(InvalidArgument, match=r"parameters.extra\['seed'\]"):
        config_from_parameters(pb.TrainingParameters(extra={"seed": "nan"}), Path("a.json"), Path("images"))


# base model messages name the model, not a path ---------------------------------------------------------------

def test_missing_base_model_checkpoint_names_the_model_not_a_path(tmp_path):
    code, details, submitted = start_job(tmp_path, base_model=pb.ModelRef(name="paintings", version=3))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and not submitted
    assert "paintings v3" in details
    assert "best.pt" not in details and "runs" not in details and str(tmp_path) not in details


def test_base_model_starts_from_its_checkpoint(tmp_path):
    checkpoint = tmp_path / "runs" / "job-of-base" / "checkpoints" / "best.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"")
    code, details, submitted = start_job(tmp_path, base_model=pb.ModelRef(name="paintings"))
    assert code is None, details
    assert submitted[0]["weights"] == str(checkpoint)


# the command lines derive their options from the schema -------------------------------------------------------

def _subparser(*path: str) -> argparse.ArgumentParser:
    from artdet.tools.cli import build_parser

    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _help_of(parser: argparse.ArgumentParser, dest: str) -> str:
    action = next(a for a in parser._actions if a.dest == dest)
    return action.help % {"default": action.default} if action.help else ""


def test_artdet_train_help_shows_ranges_choices_and_defaults():
    from artdet.detector.config import TRAIN_SCHEMA

    parser = _subparser("train")
    assert "--lr" in parser.format_help()
    for spec in TRAIN_SCHEMA.values():
        if spec.name == "augment":
            continue
        text = _help_of(parser, spec.name)
        assert spec.help in text, spec.name
        if spec.default not in (None, ""):
            shown = ", ".join(map(str, spec.default)) if isinstance(spec.default, tuple) else str(spec.default)
            assert f"default: {shown}" in text, (spec.name, text)
        if spec.low is not None:
            assert spec.interval() in text, (spec.name, text)
        if spec.choices:
            action = next(a for a in parser._actions if a.dest == spec.name)
            assert tuple(action.choices) == tuple(spec.choices), spec.name
    assert "{fasterrcnn_resnet50_fpn," in parser.format_help().replace("\n", "").replace(" ", "")


def test_artdet_train_options_reach_the_same_validation(tmp_path):
    from artdet.detector.cli import train_config_from_args

    parser = _subparser("train")
    config = train_config_from_args(parser.parse_args(["--train", "a.json", "--lr", "nan"]))
    with pytest.raises(InvalidArgument, match=r"lr: nan is not a finite number in \(0, 10\]"):
        config.validate()
    config = train_config_from_args(parser.parse_args(["--train", "a.json", "--step-milestones", "0.5", "0.7",
                                                       "--no-amp", "--aug-hflip", "0.3"]))
    config.validate()
    assert (config.step_milestones, config.amp, config.augment.hflip) == ((0.5, 0.7), False, 0.3)
    assert dataclasses.replace(config, step_milestones=(0.67, 0.89), amp=True,
                               augment=TrainConfig().augment).to_dict() == {**DEFAULTS, "train": "a.json"}


def test_jobs_start_offers_only_what_a_remote_caller_may_set(tmp_path):
    from artdet.tools.service_commands import training_parameters

    parser = _subparser("jobs", "start")
    dests = {a.dest for a in parser._actions}
    assert not dests & {"train", "val", "images", "device", "aug_hflip", "augment"}
    assert {"lr", "warmup_iters", "step_milestones", "augment_enabled", "weights"} <= dests
    args = parser.parse_args(["--dataset", "shapes", "--server", "h:1", "--lr", "0.02", "--warmup-iters", "5",
                              "--step-milestones", "0.5", "0.8", "--no-amp", "--no-augment"])
    params = training_parameters(args)
    assert params.HasField("lr") and params.lr == 0.02 and not params.augment
    assert dict(params.extra) == {"warmup_iters": "5", "step_milestones": "0.5,0.8", "amp": "False"}
    config = config_from_parameters(params, Path("a.json"), Path("images"))
    config.validate()
    assert (config.warmup_iters, config.step_milestones, config.amp) == (5, (0.5, 0.8), False)
    assert "default: 0.01" in _help_of(parser, "lr")
    too_big = parser.parse_args(["--dataset", "shapes", "--server", "h:1", "--batch-size", str(2**40)])
    with pytest.raises(InvalidArgument, match=r"--batch-size: 1099511627776 is not in \[1, 256\]"):
        training_parameters(too_big)


def test_artdet_train_refuses_a_bad_option_before_touching_the_run(tmp_path, capsys):
    from artdet.tools.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    assert main(["train", "--train", "a.json", "--out", str(run), "--overwrite", "--lr", "nan", "--workers",
                 "100"]) == 2
    error = capsys.readouterr().err
    assert "lr: nan is not a finite number in (0, 10]" in error and "workers: 100 is not in [0, 64]" in error
    assert (run / "config.json").is_file()
