"""Metadata in SQLite, artifacts in a data directory laid out for people to read.

    DATA/artdet.db                                 index of what is below
    DATA/datasets/<name>/v<N>/annotations.json     COCO (VOC uploads are converted), + images/
    DATA/datasets/<name>/v<N>/dataset.json         statistics and content hash
    DATA/runs/<job id>/                            the engine's run directory (config, checkpoints, events)
    DATA/models/<name>/<version>/model.onnx        + model.json (metrics, classes, class info)
    DATA/models/<name>/active.json                 {"version": N, "history": [...]}: what Detect serves
    DATA/tmp/                                      uploads in progress (emptied at start)

Every artifact appears by an atomic rename, then gets its database row.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from detector.files import save_json
from detector.errors import FailedPrecondition, InvalidArgument, NotFound

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL, created_at REAL NOT NULL,
    statistics TEXT NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, dataset_name TEXT NOT NULL, dataset_version INTEGER NOT NULL,
    model_name TEXT NOT NULL, model_version INTEGER NOT NULL DEFAULT 0, config TEXT NOT NULL,
    base_model TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL,
    started_at REAL NOT NULL DEFAULT 0, finished_at REAL NOT NULL DEFAULT 0, restarts INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    name TEXT NOT NULL, version INTEGER NOT NULL, job_id TEXT NOT NULL, created_at REAL NOT NULL,
    sha256 TEXT NOT NULL, size_bytes INTEGER NOT NULL, PRIMARY KEY (name, version));
"""

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_JOB_STATES = ("queued", "running")


def check_name(name: str, field: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise InvalidArgument(f"{field}: {name!r} must be 1-64 characters of letters, digits, '.', '_' or '-'")
    return name


@dataclass
class DatasetRow:
    name: str
    version: int
    sha256: str
    created_at: float
    statistics: dict[str, Any]
    path: Path


@dataclass
class JobRow:
    id: str
    state: str
    dataset_name: str
    dataset_version: int
    model_name: str
    model_version: int
    config: dict[str, Any]
    base_model: str
    error: str
    created_at: float
    started_at: float
    finished_at: float
    restarts: int
    run_dir: Path


@dataclass
class ModelRow:
    name: str
    version: int
    job_id: str
    created_at: float
    sha256: str
    size_bytes: int
    path: Path  # the version's folder
    card: dict[str, Any]  # model.json

    @property
    def onnx_path(self) -> Path:
        return self.path / "model.onnx"


class Store:
    def __init__(self, data_dir: str | Path):
        self.root = Path(data_dir).resolve()
        for sub in ("datasets", "runs", "models", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for leftover in (self.root / "tmp").iterdir():  # uploads cut off by a crash
            shutil.rmtree(leftover, ignore_errors=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.root / "artdet.db", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._remove_unindexed_datasets()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _query(self, sql: str, *args) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def staging_dir(self, prefix: str) -> Path:
        import tempfile

        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.root / "tmp"))

    # datasets --------------------------------------------------------------------------------
    def dataset_dir(self, name: str, version: int) -> Path:
        return self.root / "datasets" / name / f"v{version}"

    def _remove_unindexed_datasets(self) -> None:
        """A crash between rename and insert leaves a folder without a row: not a visible version."""
        indexed = {(r["name"], r["version"]) for r in self._query("SELECT name, version FROM datasets")}
        for folder in (self.root / "datasets").glob("*/v*"):
            version = folder.name[1:]
            if version.isdigit() and (folder.parent.name, int(version)) not in indexed:
                shutil.rmtree(folder, ignore_errors=True)

    def _dataset(self, row: sqlite3.Row) -> DatasetRow:
        return DatasetRow(row["name"], row["version"], row["sha256"], row["created_at"],
                          json.loads(row["statistics"]), self.dataset_dir(row["name"], row["version"]))

    def add_dataset(self, name: str, sha256: str, statistics: dict[str, Any], staged: Path) -> tuple[DatasetRow, bool]:
        """Publish a staged, validated dataset; the same content under the same name returns the existing one."""
        with self.transaction() as db:
            same = db.execute("SELECT * FROM datasets WHERE name = ? AND sha256 = ?", (name, sha256)).fetchone()
            if same is not None:
                shutil.rmtree(staged, ignore_errors=True)
                return self._dataset(same), True
            latest = db.execute("SELECT MAX(version) FROM datasets WHERE name = ?", (name,)).fetchone()[0] or 0
            version = latest + 1
            created = time.time()
            save_json({"name": name, "version": version, "sha256": sha256, "created_at": created,
                       "statistics": statistics}, staged / "dataset.json")
            target = self.dataset_dir(name, version)
            target.parent.mkdir(parents=True, exist_ok=True)
            staged.rename(target)
            db.execute("INSERT INTO datasets VALUES (?, ?, ?, ?, ?)",
                       (name, version, sha256, created, json.dumps(statistics)))
        return self.get_dataset(name, version), False

    def get_dataset(self, name: str, version: int = 0) -> DatasetRow:
        if version:
            rows = self._query("SELECT * FROM datasets WHERE name = ? AND version = ?", name, version)
        else:
            rows = self._query("SELECT * FROM datasets WHERE name = ? ORDER BY version DESC LIMIT 1", name)
        if not rows:
            raise NotFound(f"dataset {name!r}" + (f" version {version}" if version else "") + " not found")
        return self._dataset(rows[0])

    def list_datasets(self, name: str = "") -> list[DatasetRow]:
        rows = self._query("SELECT * FROM datasets WHERE (? = '' OR name = ?) ORDER BY name, version", name, name)
        return [self._dataset(r) for r in rows]

    def delete_dataset(self, name: str, version: int = 0) -> int:
        with self.transaction() as db:
            versions = [r[0] for r in db.execute(
                "SELECT version FROM datasets WHERE name = ? AND (? = 0 OR version = ?)", (name, version, version))]
            if not versions:
                raise NotFound(f"dataset {name!r}" + (f" version {version}" if version else "") + " not found")
            busy = db.execute(
                f"SELECT id, dataset_version FROM jobs WHERE dataset_name = ? AND state IN "
                f"({','.join('?' * len(ACTIVE_JOB_STATES))})", (name, *ACTIVE_JOB_STATES)).fetchall()
            busy = [r for r in busy if r["dataset_version"] in versions]
            if busy:
                raise FailedPrecondition(f"dataset {name!r} version {busy[0]['dataset_version']} is used by job "
                                         f"{busy[0]['id']} ({len(busy)} active job(s)); cancel or wait for them")
            db.execute("DELETE FROM datasets WHERE name = ? AND (? = 0 OR version = ?)", (name, version, version))
        for v in versions:
            trash = self.staging_dir("deleted-")
            self.dataset_dir(name, v).rename(trash / "v")
            shutil.rmtree(trash, ignore_errors=True)
        return len(versions)

    # jobs ------------------------------------------------------------------------------------
    def run_dir(self, job_id: str) -> Path:
        return self.root / "runs" / job_id

    def _job(self, row: sqlite3.Row) -> JobRow:
        keys = row.keys()
        values = {k: row[k] for k in keys if k != "seq"}
        values["config"] = json.loads(values["config"])
        return JobRow(**values, run_dir=self.run_dir(row["id"]))

    def create_job(self, job_id: str, dataset: DatasetRow, model_name: str, config: dict[str, Any],
                   base_model: str) -> JobRow:
        with self.transaction() as db:
            seq = (db.execute("SELECT MAX(seq) FROM jobs").fetchone()[0] or 0) + 1
            db.execute("INSERT INTO jobs (id, state, dataset_name, dataset_version, model_name, config, base_model,"
                       " created_at, seq) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                       (job_id, dataset.name, dataset.version, model_name, json.dumps(config), base_model,
                        time.time(), seq))
        return self.get_job(job_id)

    def update_job(self, job_id: str, **fields: Any) -> JobRow:
        if not fields:
            return self.get_job(job_id)
        assignments = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*fields.values(), job_id))
        return self.get_job(job_id)

    def get_job(self, job_id: str) -> JobRow:
        rows = self._query("SELECT * FROM jobs WHERE id = ?", job_id)
        if not rows:
            raise NotFound(f"job {job_id!r} not found")
        return self._job(rows[0])

    def list_jobs(self, state: str = "") -> list[JobRow]:
        rows = self._query("SELECT * FROM jobs WHERE (? = '' OR state = ?) ORDER BY seq", state, state)
        return [self._job(r) for r in rows]

    # models ------------------------------------------------------------------------------------
    def model_dir(self, name: str, version: int) -> Path:
        return self.root / "models" / name / str(version)

    def _model(self, row: sqlite3.Row) -> ModelRow:
        folder = self.model_dir(row["name"], row["version"])
        card = json.loads((folder / "model.json").read_text())
        return ModelRow(row["name"], row["version"], row["job_id"], row["created_at"], row["sha256"],
                        row["size_bytes"], folder, card)

    def add_model(self, name: str, job_id: str, onnx_file: Path, card: dict[str, Any]) -> ModelRow:
        import hashlib

        digest = hashlib.sha256(onnx_file.read_bytes()).hexdigest()
        with self.transaction() as db:
            existing = db.execute("SELECT * FROM models WHERE job_id = ? AND name = ?", (job_id, name)).fetchone()
            if existing is not None:  # registration is idempotent per job (a restart may repeat it)
                return self._model(existing)
            version = (db.execute("SELECT MAX(version) FROM models WHERE name = ?", (name,)).fetchone()[0] or 0) + 1
            staged = self.staging_dir("model-")
            shutil.copyfile(onnx_file, staged / "model.onnx")
            created = time.time()
            save_json({**card, "name": name, "version": version, "job_id": job_id, "created_at": created},
                      staged / "model.json")
            target = self.model_dir(name, version)
            target.parent.mkdir(parents=True, exist_ok=True)
            staged.rename(target)
            db.execute("INSERT INTO models VALUES (?, ?, ?, ?, ?, ?)",
                       (name, version, job_id, created, digest, onnx_file.stat().st_size))
        return self.get_model(name, version)

    def get_model(self, name: str, version: int) -> ModelRow:
        rows = self._query("SELECT * FROM models WHERE name = ? AND version = ?", name, version)
        if not rows:
            raise NotFound(f"model {name!r} version {version} not found")
        return self._model(rows[0])

    def list_models(self, name: str = "") -> list[ModelRow]:
        rows = self._query("SELECT * FROM models WHERE (? = '' OR name = ?) ORDER BY name, version", name, name)
        return [self._model(r) for r in rows]

    def update_model_card(self, name: str, version: int, **changes: Any) -> ModelRow:
        with self._lock:
            model = self.get_model(name, version)
            save_json({**model.card, **changes}, model.path / "model.json")
        return self.get_model(name, version)

    def delete_model(self, name: str, version: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM models WHERE name = ? AND version = ?", (name, version))
        trash = self.staging_dir("deleted-")
        self.model_dir(name, version).rename(trash / "m")
        shutil.rmtree(trash, ignore_errors=True)
