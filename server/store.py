"""Metadata in SQLite, artifacts in a data directory laid out for people to read.

    DATA/artdet.db                                 index of what is below
    DATA/datasets/<name>/v<N>/annotations.json     COCO (VOC uploads are converted), + images/
    DATA/datasets/<name>/v<N>/dataset.json         statistics and content hash
    DATA/runs/<job id>/                            the engine's run directory (config, checkpoints, events)
    DATA/models/<name>/<version>/model.onnx        + model.json (metrics, classes, class info)
    DATA/models/<name>/active.json                 {"version": N, "history": [...]}: what Detect serves
    DATA/tmp/                                      uploads in progress (emptied at start)
    DATA/cache/                                    what can be made again (dataset thumbnails)

    DATA/quarantine/<time>-...                     what was found without a row and could not be rebuilt

Every artifact appears by an atomic (and fsynced) rename, then gets its database row. The folders are the
state: at start, folders without a row get their row back from dataset.json / model.json / job.json (so
a crash between rename and insert, or a deleted artdet.db, loses nothing); what cannot be rebuilt is moved
to quarantine/, never deleted. New versions are numbered past both the rows and the folders on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from artdet.detector.dataset import check_file_name
from artdet.detector.errors import DataCorrupted, DiskFull, FailedPrecondition, NotFound
from artdet.detector.files import (durable_rename, free_mb, fsync_dir, fsync_file, is_disk_full, publish_permissions,
                                   save_json)
from artdet.server.faults import fault_point
from artdet.server.names import NAME_PATTERN

log = logging.getLogger("artdet.store")

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
DEFAULT_MIN_FREE_MB = 500


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


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class Store:
    def __init__(self, data_dir: str | Path, min_free_mb: int = DEFAULT_MIN_FREE_MB):
        self.root = Path(data_dir).resolve()
        self.min_free_mb = max(0, int(min_free_mb or 0))
        for sub in ("datasets", "runs", "models", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for leftover in (self.root / "tmp").iterdir():  # uploads cut off by a crash
            shutil.rmtree(leftover, ignore_errors=True)
        self._lock = threading.RLock()
        self._quarantine_stamp = time.strftime("%Y%m%dT%H%M%S")
        self.report: dict[str, list[str]] = {"rebuilt": [], "quarantined": [], "dropped": []}
        db_path = self.root / "artdet.db"
        if not db_path.exists():  # the journal of a deleted database must not be replayed into a new one
            for suffix in ("-wal", "-shm", "-journal"):
                stale = db_path.with_name(db_path.name + suffix)
                if stale.exists():
                    self._quarantine(stale, "the journal of a deleted database")
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._reconcile()

    # database ----------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; on any error a rollback that never hides the error that caused it
        (SQLite rolls a transaction back by itself on SQLITE_FULL, and a second ROLLBACK would fail with
        'cannot rollback - no transaction is active'). A full disk becomes DiskFull."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if is_disk_full(exc):
                    raise self.disk_full() from exc
                raise
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        log.warning("rollback after %r failed", exc, exc_info=True)
                if is_disk_full(exc) and not str(exc).startswith("data directory full"):
                    raise self.disk_full() from exc
                raise

    def _query(self, sql: str, *args) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # disk space --------------------------------------------------------------------------------
    def free_mb(self) -> int:
        return free_mb(self.root)

    def used_bytes(self) -> int:
        """Bytes of the files under the data directory (links not followed)."""
        total = 0
        for folder, _, files in os.walk(self.root):
            for name in files:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except OSError:  # removed while we walked
                    pass
        return total

    def cache_dir(self, kind: str) -> Path:
        return self.root / "cache" / kind

    def disk_full(self) -> DiskFull:
        return DiskFull(f"data directory full ({self.free_mb()} MB free)")

    def ensure_free_space(self) -> None:
        """Refuse new uploads and jobs while less than `min_free_mb` is free under the data directory."""
        if not self.min_free_mb:
            return
        free = self.free_mb()
        if free < self.min_free_mb:
            raise DiskFull(f"data directory full ({free} MB free); the server accepts new uploads and jobs "
                           f"with at least {self.min_free_mb} MB free")

    def staging_dir(self, prefix: str) -> Path:
        """A private folder under tmp/ for an upload in progress; refused below the free-space floor."""
        self.ensure_free_space()
        return self._scratch(prefix)

    def _scratch(self, prefix: str) -> Path:
        try:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=self.root / "tmp"))
        except OSError as exc:
            if is_disk_full(exc):
                raise self.disk_full() from exc
            raise

    def _trash_path(self) -> Path:
        return self.root / "tmp" / f"deleted-{time.time_ns()}-{threading.get_ident()}"

    def _discard(self, folder: Path) -> None:
        """Remove a published folder: renamed into tmp/ first, so nothing half-deleted stays visible."""
        if not folder.exists():
            return
        trash = self._trash_path()
        try:
            durable_rename(folder, trash)
        except OSError:  # even a full disk must let a deletion free space: remove it where it is
            trash = folder
        shutil.rmtree(trash, ignore_errors=True)

    # the folders are the state ------------------------------------------------------------------
    def _quarantine(self, path: Path, reason: str) -> None:
        relative = path.relative_to(self.root).as_posix().replace("/", "_")
        folder = self.root / "quarantine"
        folder.mkdir(exist_ok=True)
        target = folder / f"{self._quarantine_stamp}-{relative}"
        counter = 1
        while target.exists():
            counter += 1
            target = folder / f"{self._quarantine_stamp}-{relative}-{counter}"
        durable_rename(path, target)
        self.report["quarantined"].append(path.relative_to(self.root).as_posix())
        log.warning("moved %s to %s: %s", path, target, reason)

    def _reconcile(self) -> None:
        """Give every complete folder its row back; quarantine what cannot be indexed; drop rows whose
        folder is gone."""
        with self._lock:
            self._reconcile_datasets()
            self._reconcile_models()
            self._reconcile_jobs()
        for kind, items in self.report.items():
            if items:
                log.warning("data directory check: %s %d item(s): %s", kind, len(items), ", ".join(items[:20]))

    def _reconcile_datasets(self) -> None:
        indexed = {(r["name"], r["version"]) for r in self._query("SELECT name, version FROM datasets")}
        found = set()
        for group in sorted((self.root / "datasets").iterdir()):
            if not group.is_dir() or not NAME_PATTERN.match(group.name):
                self._quarantine(group, "not a dataset name")
                continue
            for folder in sorted(group.iterdir()):
                version = folder.name[1:]
                if not (folder.is_dir() and folder.name.startswith("v") and version.isdigit() and int(version) > 0):
                    self._quarantine(folder, "not a dataset version")
                    continue
                key = (group.name, int(version))
                if key in indexed:
                    found.add(key)
                    continue
                card = _read_json(folder / "dataset.json")
                if (not isinstance(card, dict) or not (folder / "annotations.json").is_file()
                        or not isinstance(card.get("statistics"), dict) or not card.get("sha256")):
                    self._quarantine(folder, "a dataset folder without a readable dataset.json and annotations.json")
                    continue
                with self.transaction() as db:
                    db.execute("INSERT INTO datasets VALUES (?, ?, ?, ?, ?)",
                               (key[0], key[1], card["sha256"], float(card.get("created_at") or folder.stat().st_mtime),
                                json.dumps(card["statistics"])))
                found.add(key)
                self.report["rebuilt"].append(f"datasets/{key[0]}/v{key[1]}")
        self._drop_rows("datasets", indexed - found, "datasets/{}/v{}")

    def _reconcile_models(self) -> None:
        indexed = {(r["name"], r["version"]) for r in self._query("SELECT name, version FROM models")}
        found = set()
        for group in sorted((self.root / "models").iterdir()):
            if not group.is_dir():
                continue
            if not NAME_PATTERN.match(group.name):
                self._quarantine(group, "not a model name")
                continue
            for folder in sorted(group.iterdir()):
                if folder.name == "active.json":
                    continue
                if not (folder.is_dir() and folder.name.isdigit() and int(folder.name) > 0):
                    self._quarantine(folder, "not a model version")
                    continue
                key = (group.name, int(folder.name))
                complete = (folder / "model.onnx").is_file() and (folder / "model.json").is_file()
                if key in indexed and complete:
                    found.add(key)
                    continue
                card = _read_json(folder / "model.json")
                if not complete or not isinstance(card, dict) or key in indexed:
                    self._quarantine(folder, "a model folder without a readable model.json and model.onnx")
                    continue
                onnx = folder / "model.onnx"
                with self.transaction() as db:
                    db.execute("INSERT INTO models VALUES (?, ?, ?, ?, ?, ?)",
                               (key[0], key[1], str(card.get("job_id", "")),
                                float(card.get("created_at") or folder.stat().st_mtime), _sha256_file(onnx),
                                onnx.stat().st_size))
                found.add(key)
                self.report["rebuilt"].append(f"models/{key[0]}/{key[1]}")
        self._drop_rows("models", indexed - found, "models/{}/{}")

    def _drop_rows(self, table: str, keys: set[tuple[str, int]], folder: str) -> None:
        """Rows whose folder is gone or was moved to quarantine: dropped, and reported."""
        for name, version in sorted(keys):
            with self.transaction() as db:
                db.execute(f"DELETE FROM {table} WHERE name = ? AND version = ?", (name, version))
            self.report["dropped"].append(folder.format(name, version))

    def _reconcile_jobs(self) -> None:
        gone = [r["id"] for r in self._query("SELECT id, state FROM jobs")
                if r["state"] not in ACTIVE_JOB_STATES and not self.run_dir(r["id"]).is_dir()]
        for job_id in gone:  # an ended job whose deletion a crash interrupted
            with self.transaction() as db:
                db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            self.report["dropped"].append(f"runs/{job_id}")
        indexed = {r["id"] for r in self._query("SELECT id FROM jobs")}
        rebuilt = []
        for folder in sorted((self.root / "runs").iterdir()):
            if folder.name in indexed:
                continue
            job = _read_json(folder / "job.json") if folder.is_dir() else None
            row = self._job_from_folder(folder, job) if isinstance(job, dict) else None
            if row is None:
                self._quarantine(folder, "a run folder without a job row or a readable job.json")
                continue
            rebuilt.append(row)
        for row in sorted(rebuilt, key=lambda r: r["created_at"]):
            with self.transaction() as db:
                row["seq"] = (db.execute("SELECT MAX(seq) FROM jobs").fetchone()[0] or 0) + 1
                db.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                           tuple(row.values()))
            self.report["rebuilt"].append(f"runs/{row['id']}")

    @staticmethod
    def _job_from_folder(folder: Path, job: dict[str, Any]) -> dict[str, Any] | None:
        """A job row from job.json and the events the run wrote (state, model version, error, times)."""
        if not isinstance(job.get("config"), dict):
            return None
        name, version = job.get("dataset_name"), job.get("dataset_version")
        if not name and "/v" in str(job.get("dataset", "")):  # job.json of an older server
            name, _, number = str(job["dataset"]).rpartition("/v")
            version = int(number) if number.isdigit() else 0
        if not name:
            return None
        events = []
        if (folder / "events.jsonl").is_file():
            for line in (folder / "events.jsonl").read_text(errors="replace").splitlines():
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue  # a line cut off by a crash
        row = {"id": folder.name, "state": "queued", "dataset_name": name, "dataset_version": int(version or 0),
               "model_name": job.get("model_name") or name, "model_version": 0,
               "config": json.dumps(job["config"]), "base_model": job.get("base_model", ""), "error": "",
               "created_at": float(job.get("created_at") or folder.stat().st_mtime), "started_at": 0.0,
               "finished_at": 0.0, "restarts": 0}
        for event in events:
            kind = event.get("type")
            if kind == "started":
                row["state"] = "running"
                row["started_at"] = row["started_at"] or float(event.get("time", 0))
            elif kind == "restarted":
                row["restarts"] += 1
            elif kind == "registered":
                row["model_name"] = event.get("model_name") or row["model_name"]
                row["model_version"] = int(event.get("model_version") or 0)
            elif kind == "failed":
                row["error"] = str(event.get("error", ""))
            elif kind == "finished" and event.get("state") in JOB_STATES:
                row["state"] = event["state"]
                row["finished_at"] = float(event.get("time", 0))
        return row

    def _next_version(self, db: sqlite3.Connection, table: str, name: str, folders: Path) -> int:
        """One past both the rows and the folders on disk: a folder a crash left behind never blocks."""
        latest = db.execute(f"SELECT MAX(version) FROM {table} WHERE name = ?", (name,)).fetchone()[0] or 0
        if folders.is_dir():
            for folder in folders.iterdir():
                number = folder.name[1:] if table == "datasets" else folder.name
                if number.isdigit():
                    latest = max(latest, int(number))
        return latest + 1

    def _publish(self, staged: Path, target: Path, point: str, insert) -> None:
        """Rename a finished folder into place, then insert its row (in the caller's transaction). If the
        insert (or the commit after it) fails, the folder goes back where it came from."""
        publish_permissions(staged)
        target.parent.mkdir(parents=True, exist_ok=True)
        durable_rename(staged, target)
        try:
            fault_point(point)
            insert()
        except BaseException:
            durable_rename(target, staged)
            raise

    # datasets --------------------------------------------------------------------------------
    def dataset_dir(self, name: str, version: int) -> Path:
        return self.root / "datasets" / name / f"v{version}"

    def _dataset(self, row: sqlite3.Row) -> DatasetRow:
        return DatasetRow(row["name"], row["version"], row["sha256"], row["created_at"],
                          json.loads(row["statistics"]), self.dataset_dir(row["name"], row["version"]))

    def add_dataset(self, name: str, sha256: str, statistics: dict[str, Any], staged: Path) -> tuple[DatasetRow, bool]:
        """Publish a staged, validated dataset; the same content under the same name returns the existing one."""
        published: list[Path] = []
        try:
            with self.transaction() as db:
                same = db.execute("SELECT * FROM datasets WHERE name = ? AND sha256 = ?", (name, sha256)).fetchone()
                if same is not None:
                    shutil.rmtree(staged, ignore_errors=True)
                    return self._dataset(same), True
                version = self._next_version(db, "datasets", name, self.root / "datasets" / name)
                created = time.time()
                save_json({"name": name, "version": version, "sha256": sha256, "created_at": created,
                           "statistics": statistics}, staged / "dataset.json")
                target = self.dataset_dir(name, version)
                self._publish(staged, target, "dataset-renamed", lambda: db.execute(
                    "INSERT INTO datasets VALUES (?, ?, ?, ?, ?)",
                    (name, version, sha256, created, json.dumps(statistics))))
                published.append(target)
        except BaseException:
            if published and published[0].exists() and not staged.exists():  # the commit failed
                durable_rename(published[0], staged)
            raise
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
            self._discard(self.dataset_dir(name, v))
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
        """The run folder and its job.json exist before the row does, so a job the runner sees as queued
        always has them (and a lost database can be rebuilt from them)."""
        self.ensure_free_space()
        run_dir = self.run_dir(job_id)
        created = time.time()
        with self.transaction() as db:
            seq = (db.execute("SELECT MAX(seq) FROM jobs").fetchone()[0] or 0) + 1
            run_dir.mkdir(parents=True, exist_ok=True)
            save_json({"id": job_id, "dataset_name": dataset.name, "dataset_version": dataset.version,
                       "dataset": f"{dataset.name}/v{dataset.version}", "model_name": model_name,
                       "base_model": base_model, "created_at": created, "config": config}, run_dir / "job.json")
            fsync_dir(run_dir.parent)
            try:
                db.execute("INSERT INTO jobs (id, state, dataset_name, dataset_version, model_name, config, "
                           "base_model, created_at, seq) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                           (job_id, dataset.name, dataset.version, model_name, json.dumps(config), base_model,
                            created, seq))
            except BaseException:
                (run_dir / "job.json").unlink(missing_ok=True)
                raise
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

    def delete_job(self, job_id: str) -> int:
        """Remove an ended job's run folder and row; the bytes freed. Its registered models stay. Refused while
        the job, or an active job retraining from its checkpoint, is queued or running. The folder leaves
        first (into tmp/): a crash before the row goes leaves a row without a folder, which the next start drops."""
        folder = self.run_dir(job_id)
        with self.transaction() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise NotFound(f"job {job_id!r} not found")
            if row["state"] in ACTIVE_JOB_STATES:
                raise FailedPrecondition(f"job {job_id} is {row['state']}; cancel it first")
            active = db.execute(f"SELECT id, config FROM jobs WHERE state IN "
                                f"({','.join('?' * len(ACTIVE_JOB_STATES))})", ACTIVE_JOB_STATES).fetchall()
            for other in active:
                if Path(str(json.loads(other["config"]).get("weights", ""))).is_relative_to(folder):
                    raise FailedPrecondition(f"job {job_id}: job {other['id']} retrains from its checkpoint; "
                                             "wait for it or cancel it first")
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
            trash = self._trash_path()
            if folder.exists():
                durable_rename(folder, trash)
            try:
                db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            except BaseException:
                if trash.exists():
                    durable_rename(trash, folder)
                raise
        shutil.rmtree(trash, ignore_errors=True)
        return size

    # models ------------------------------------------------------------------------------------
    def model_dir(self, name: str, version: int) -> Path:
        return self.root / "models" / name / str(version)

    def _model(self, row: sqlite3.Row) -> ModelRow:
        folder = self.model_dir(row["name"], row["version"])
        card = _read_json(folder / "model.json")
        if not isinstance(card, dict):
            raise DataCorrupted(f"model {row['name']!r} version {row['version']}: its model.json is missing or "
                                "damaged on the server")
        return ModelRow(row["name"], row["version"], row["job_id"], row["created_at"], row["sha256"],
                        row["size_bytes"], folder, card)

    def add_model(self, name: str, job_id: str, onnx_file: Path, card: dict[str, Any],
                  files: dict[str, Path] | None = None) -> ModelRow:
        """Register a job's model (and `files` beside it: its variants, by file name); idempotent per (job,
        name), so a restart repeating it makes no second version. Not held to the free-space floor (the
        training is already paid for); a really full disk is DiskFull."""
        digest = _sha256_file(onnx_file)
        size = onnx_file.stat().st_size
        staged = None
        published: list[Path] = []
        try:
            with self.transaction() as db:
                existing = db.execute("SELECT * FROM models WHERE job_id = ? AND name = ?", (job_id, name)).fetchone()
                if existing is not None:
                    return self._model(existing)
                version = self._next_version(db, "models", name, self.root / "models" / name)
                staged = self._scratch("model-")
                shutil.copyfile(onnx_file, staged / "model.onnx")
                fsync_file(staged / "model.onnx")  # the run's copy goes once this one is registered
                for file_name, path in (files or {}).items():
                    shutil.copyfile(path, staged / check_file_name(file_name, "variant file"))
                    fsync_file(staged / file_name)
                created = time.time()
                save_json({**card, "name": name, "version": version, "job_id": job_id, "created_at": created},
                          staged / "model.json")
                target = self.model_dir(name, version)
                self._publish(staged, target, "model-renamed", lambda: db.execute(
                    "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?)", (name, version, job_id, created, digest, size)))
                published.append(target)
        except BaseException:
            if published and published[0].exists() and staged is not None and not staged.exists():
                durable_rename(published[0], staged)  # the commit failed
            raise
        finally:
            if staged is not None and staged.exists():
                shutil.rmtree(staged, ignore_errors=True)
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
            try:
                save_json({**model.card, **changes}, model.path / "model.json")
            except OSError as exc:
                if is_disk_full(exc):
                    raise self.disk_full() from exc
                raise
            except DiskFull as exc:
                raise self.disk_full() from exc
        return self.get_model(name, version)

    def delete_model(self, name: str, version: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM models WHERE name = ? AND version = ?", (name, version))
        self._discard(self.model_dir(name, version))
