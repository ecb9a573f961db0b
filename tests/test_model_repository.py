"""ModelRepository on a models directory (what the full server and Detect-only replicas serve): activation,
rollback, resolving names and versions, pinned and evicted versions, calls in flight, and a replica's refresh."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artdet.detector.errors import DataCorrupted, FailedPrecondition, InvalidArgument, NotFound
from artdet.server.model_repository import ModelRepository

MODEL = "shapes"


def _models_dir(root: Path, onnx: Path, names: dict[str, int]) -> Path:
    """<root>/<name>/<version>/{model.onnx, model.json}, every version hard-linked to one exported file."""
    for name, versions in names.items():
        for version in range(1, versions + 1):
            folder = root / name / str(version)
            folder.mkdir(parents=True)
            os.link(onnx, folder / "model.onnx")
            (folder / "model.json").write_text(json.dumps({"class_info": {"circle": f"{name} v{version}"}}))
    return root


def _image() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _active_file(root: Path, name: str = MODEL) -> dict:
    return json.loads((root / name / "active.json").read_text())


@pytest.fixture
def models(overfit_export, tmp_path) -> Path:
    return _models_dir(tmp_path / "models", overfit_export["path"], {MODEL: 4, "other": 1})


def _repository(root: Path, **kwargs) -> ModelRepository:
    return ModelRepository(root, intra_op_threads=1, **kwargs)


def test_activation_is_served_written_down_and_survives_a_restart(models):
    repository = _repository(models)
    assert repository.active_version(MODEL) == 0
    repository.activate(MODEL, 2)
    assert repository.active_version(MODEL) == 2 and repository.resolve(MODEL).version == 2
    assert _active_file(models) == {"version": 2, "history": [2]}
    repository.activate(MODEL, 3)
    repository.activate(MODEL, 2)  # a version activated again moves to the end of the history
    assert _active_file(models) == {"version": 2, "history": [3, 2]}
    again = _repository(models)  # a restarted server (or a new replica) serves what was active
    assert again.active_version(MODEL) == 2 and again.resolve(MODEL).version == 2
    assert again.resolve(MODEL).descriptions == {"circle": "shapes v2"}


def test_rollback_walks_back_the_history_and_stops_at_its_start(models):
    repository = _repository(models)
    for version in (1, 2, 3):
        repository.activate(MODEL, version)
    assert repository.rollback(MODEL) == 2 and repository.resolve(MODEL).version == 2
    assert _active_file(models) == {"version": 2, "history": [1, 2]}
    assert repository.rollback(MODEL) == 1 and repository.resolve(MODEL).version == 1
    with pytest.raises(FailedPrecondition, match="no previously active version"):
        repository.rollback(MODEL)
    assert repository.resolve(MODEL).version == 1 and _active_file(models)["version"] == 1


def test_a_forgotten_version_is_never_rolled_back_to_and_the_active_one_cannot_be_forgotten(models):
    repository = _repository(models)
    for version in (1, 2, 3):
        repository.activate(MODEL, version)
    with pytest.raises(FailedPrecondition, match="is active"):
        repository.forget(MODEL, 3)
    repository.forget(MODEL, 2)  # what DeleteModel does before removing the folder
    assert _active_file(models)["history"] == [1, 3]
    assert repository.rollback(MODEL) == 1


def test_rollback_skips_versions_whose_folder_is_gone(models):
    repository = _repository(models)
    for version in (1, 2, 3):
        repository.activate(MODEL, version)
    (models / MODEL / "2" / "model.onnx").unlink()
    (models / MODEL / "2" / "model.json").unlink()
    (models / MODEL / "2").rmdir()
    assert repository.rollback(MODEL) == 1


def test_resolving_names_and_versions(models):
    repository = _repository(models)
    with pytest.raises(FailedPrecondition, match="no model is active"):
        repository.resolve()
    with pytest.raises(FailedPrecondition, match="'shapes' has no active version"):
        repository.resolve(MODEL)
    assert repository.resolve(MODEL, 4).version == 4  # an explicit version needs no activation
    with pytest.raises(NotFound, match="'nosuch' not found"):
        repository.resolve("nosuch")
    with pytest.raises(NotFound, match="version 9 not found"):
        repository.resolve(MODEL, 9)
    with pytest.raises(InvalidArgument, match="model_name"):
        repository.resolve("../other")
    repository.activate(MODEL, 1)
    assert repository.resolve().name == MODEL  # the only active model is the default
    repository.activate("other", 1)
    with pytest.raises(InvalidArgument, match="several models"):
        repository.resolve()
    configured = _repository(models, default_model="other")
    assert configured.resolve().name == "other"


def test_with_no_extra_slots_the_active_and_previous_versions_stay_loaded(models):
    repository = _repository(models, extra_versions=0)
    repository.activate(MODEL, 1)
    repository.activate(MODEL, 2)
    assert set(repository.loaded_versions()) == {(MODEL, 1), (MODEL, 2)}
    assert repository.resolve(MODEL).detector is repository.resolve(MODEL).detector  # not loaded per call
    assert repository.resolve(MODEL, 4).version == 4  # asked for explicitly: served, not kept without extra slots
    assert set(repository.loaded_versions()) == {(MODEL, 1), (MODEL, 2)}
    repository.activate(MODEL, 3)  # 3 active, 2 previous: 1 is neither any more
    assert set(repository.loaded_versions()) == {(MODEL, 2), (MODEL, 3)}


def test_extra_slots_keep_the_most_recently_requested_versions(models):
    repository = _repository(models, extra_versions=1)
    repository.activate(MODEL, 1)
    repository.activate(MODEL, 2)
    repository.resolve(MODEL, 3)
    repository.resolve(MODEL, 4)
    assert set(repository.loaded_versions()) == {(MODEL, 2), (MODEL, 1), (MODEL, 4)}  # active, previous, latest
    repository.resolve(MODEL, 3)
    assert set(repository.loaded_versions()) == {(MODEL, 2), (MODEL, 1), (MODEL, 3)}
    assert repository.resolve(MODEL).detector is repository.resolve(MODEL).detector  # not loaded per call


def test_a_call_in_flight_keeps_the_version_it_started_with(models):
    repository = _repository(models, extra_versions=0)
    repository.activate(MODEL, 1)
    in_flight = repository.resolve(MODEL)
    for version in (2, 3):  # version 1 is neither active nor previous afterwards: unloaded
        repository.activate(MODEL, version)
    assert (MODEL, 1) not in repository.loaded_versions()
    result = in_flight.detector.detect(_image(), score_threshold=0.0)
    assert in_flight.version == 1 and (result.width, result.height) == (128, 96)
    assert repository.resolve(MODEL).version == 3


def test_a_replica_picks_up_activations_when_it_refreshes(models):
    server = _repository(models)
    server.activate(MODEL, 1)
    replica = _repository(models)
    assert replica.resolve(MODEL).version == 1
    server.activate(MODEL, 2)
    assert replica.resolve(MODEL).version == 1  # until it re-reads active.json
    replica.refresh()
    assert replica.active_version(MODEL) == 2 and replica.resolve(MODEL).version == 2
    assert (MODEL, 2) in replica.loaded_versions()  # loaded when switching, not at the first call
    server.rollback(MODEL)
    replica.refresh()
    assert replica.resolve(MODEL).version == 1


def test_a_replica_keeps_serving_through_a_damaged_active_file(models):
    server = _repository(models)
    server.activate(MODEL, 2)
    replica = _repository(models)
    (models / MODEL / "active.json").write_text('{"version": ')  # half copied
    replica.refresh()
    assert replica.resolve(MODEL).version == 2
    with pytest.raises(DataCorrupted, match="active.json is damaged"):
        _repository(models).activate(MODEL, 3)
