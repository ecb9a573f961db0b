"""`artdet bench --reliability [--quick] --json OUT.json`: how the real server holds up.

Starts `artdet serve` on loopback (tokens for every role), trains a tiny model on a synthetic set, then:
  fuzz     seeded mutated requests to every RPC; counts deaths, INTERNAL / UNKNOWN answers, hangs, RSS
  roles    every RPC x {no token, wrong token, each role} against server/auth.py's own table
  load     8 Detect threads during a training job and during back-and-forth activations
  memory   8 concurrent 12 MP Detects (PNG, JPEG): peak RSS; RSS after 100 vs 1,000 mixed Detects
  faults   SIGKILL at each ARTDET_FAULT point (when the server has the hook), disk floor, DB deleted
Findings are reported, never fixed here.
"""

from __future__ import annotations

import importlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import grpc

from artdet.v1 import artdet_pb2 as pb
from artdet.tools.bench import fuzz
from artdet.tools.bench.processes import rss_mb

ROOT = Path(__file__).resolve().parents[2]
TINY_ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"
TOKENS = {"admin": "admin-token", "annotator": "annotator-token", "operator": "operator-token",
          "client": "client-token"}
WRONG_TOKEN = "not-a-token"
MODEL = "shapes"
DATASET = "shapes"
PEAK_TARGET_MB = 600
GROWTH_TARGET_MB = 50


def tiny_parameters(iters: int = 2, epochs: int = 1) -> pb.TrainingParameters:
    """tests/conftest.py TINY_JOB as TrainingParameters (random init: no downloads)."""
    params = pb.TrainingParameters(arch=TINY_ARCH, stage1_epochs=epochs, stage2_epochs=epochs, max_size=128,
                                   max_iters_per_epoch=iters, batch_size=2)
    params.extra["workers"] = "0"
    return params


# -- the server process -----------------------------------------------------------------------------

class Server:
    """`python -m artdet.tools.cli serve --data-dir DIR --port 0` with ARTDET_TOKENS for every role."""

    def __init__(self, data_dir: Path, *extra: str, env: dict | None = None, log: Path | None = None):
        self.data_dir = Path(data_dir)
        self.extra = [str(e) for e in extra]
        self.env = {**os.environ, "ARTDET_TOKENS": ";".join(f"{t}={r}" for r, t in TOKENS.items()), **(env or {})}
        if "ARTDET_FAULT" not in (env or {}):
            self.env.pop("ARTDET_FAULT", None)  # only the fault runs inject faults
        self.log = log or self.data_dir.parent / f"{self.data_dir.name}-server.log"
        self.process: subprocess.Popen | None = None
        self.address = ""
        self.channel: grpc.Channel | None = None

    def start(self, timeout: float = 90) -> "Server":
        args = [sys.executable, "-m", "artdet.tools.cli", "serve", "--data-dir", str(self.data_dir), "--port", "0",
                "--host", "127.0.0.1", "--no-console", *self.extra]
        self.process = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                        stderr=self.log.open("ab"), text=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.process.stdout.readline()
            if line.startswith("artdet: ready on "):
                self.address = line.split()[-1]
                threading.Thread(target=self._drain, daemon=True).start()
                options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
                self.channel = grpc.insecure_channel(self.address, options=options)
                return self
            if self.process.poll() is not None:
                break
        raise RuntimeError(f"server did not start ({' '.join(self.extra)}):\n{self.log_tail()}")

    def _drain(self) -> None:
        try:
            for _ in self.process.stdout:
                pass
        except (ValueError, OSError):
            pass

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def metadata(self, role: str | None = "admin") -> tuple:
        return (("authorization", f"Bearer {TOKENS[role]}"),) if role else ()

    def stub(self, service: str):
        from artdet.v1 import artdet_pb2_grpc as rpc

        return getattr(rpc, f"{service}Stub")(self.channel)

    def call(self, service: str, method: str, request, role: str | None = "admin", timeout: float = 30):
        return getattr(self.stub(service), method)(request, metadata=self.metadata(role), timeout=timeout)

    def kill(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self._close()

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()

    def wait_dead(self, timeout: float) -> bool:
        try:
            self.process.wait(timeout=timeout)
            self._close()
            return True
        except subprocess.TimeoutExpired:
            return False

    def _close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def restart(self) -> grpc.Channel:
        self.kill()
        self.start()
        return self.channel


# -- fixtures on the server ---------------------------------------------------------------------------

def push(server: Server, annotations: Path, name: str = DATASET, timeout: float = 120) -> pb.Dataset:
    from artdet.tools.client import upload_requests as requests

    return server.stub("DatasetService").UploadDataset(requests(name, annotations, None, progress=False),
                                                        metadata=server.metadata("annotator"), timeout=timeout)


def start_job(server: Server, params: pb.TrainingParameters | None = None, model_name: str = MODEL) -> pb.Job:
    return server.call("TrainingService", "StartJob", pb.StartJobRequest(
        dataset_name=DATASET, parameters=params or tiny_parameters(), weights="none", model_name=model_name),
        role="operator")


def wait_job(server: Server, job_id: str, timeout: float = 600) -> pb.Job:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = server.call("TrainingService", "GetJob", pb.GetJobRequest(id=job_id), role="operator")
        if job.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED):
            return job
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} did not finish in {timeout} s")


def prepare(server: Server, work: Path, log: Callable[[str], None]) -> dict:
    """A dataset, one trained + active model v1; returns what the fuzz needs to aim at."""
    from artdet.tools.experiments.synthetic import write_shapes_dataset

    annotations = write_shapes_dataset(work / "shapes", images=8, seed=11, name="annotations.json")
    started = time.time()
    dataset = push(server, annotations)
    job = wait_job(server, start_job(server).id)
    if job.state != pb.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"fixture training job failed: {job.error}\n{server.log_tail()}")
    server.call("ModelService", "ActivateModel", pb.ModelRef(name=MODEL, version=job.model_version),
                role="operator")
    log(f"reliability: fixture dataset + model v{job.model_version} in {time.time() - started:.0f} s")
    model = server.call("ModelService", "GetModel", pb.ModelRef(name=MODEL, version=job.model_version),
                        role="operator")
    return {"annotations": annotations, "dataset_version": dataset.version, "job_id": job.id,
            "model_version": job.model_version, "class_names": list(model.class_names)}


def small_image() -> bytes:
    from artdet.tools.bench.fuzz import ImageFactory

    return ImageFactory(0).small_jpeg


# -- fuzz ---------------------------------------------------------------------------------------------

def run_fuzz(server: Server, fixture: dict, count: int, seed: int, huge_side: int = 6000,
             log: Callable[[str], None] = print) -> dict:
    targets = fuzz.Targets(dataset_name=DATASET, dataset_version=fixture["dataset_version"], model_name=MODEL,
                           model_version=fixture["model_version"], job_id=fixture["job_id"],
                           class_names=fixture["class_names"])
    generator = fuzz.CaseGenerator(targets, seed, huge_side)
    rng = random.Random(seed)
    rss_before = server.rss_mb()
    started = time.time()
    progress = {"n": 0}

    def on_outcome(outcome: fuzz.Outcome) -> None:
        progress["n"] += 1
        if progress["n"] % 250 == 0:
            log(f"reliability: fuzz {progress['n']}/{count} ({time.time() - started:.0f} s)")

    result = fuzz.run_cases(server.channel, generator.generate(rng, count), server.metadata("admin"),
                            alive=server.alive, restart=server.restart, on_outcome=on_outcome)
    summary = result.summary()
    summary.update(seed=seed, seconds=round(time.time() - started, 1), rss_before_mb=round(rss_before, 1),
                   rss_after_mb=round(server.rss_mb(), 1) if server.alive() else None,
                   methods_covered=sorted({o.method for o in result.outcomes}),
                   methods_total=len(fuzz.methods()))
    summary["alive_after"], summary["detect_after"], summary["health_after"] = check_alive(server)
    annotate_from_log(summary["failures"], server.log_tail(50_000_000))
    return summary


def annotate_from_log(failures: list[dict], log_text: str) -> None:
    """Add the server's own exception line to failures whose message carries a request id (for routing)."""
    for failure in failures:
        match = re.search(r"request id ([0-9a-f]{6,})", failure.get("sample_message", ""))
        if not match:
            continue
        start = log_text.find(f"request {match.group(1)}")
        if start < 0:
            continue
        block = log_text[start:start + 20_000].splitlines()
        frames = [line.strip() for line in block[1:] if line.startswith('  File "')]
        ours = [f for f in frames if "/site-packages/" not in f]
        for line in block[1:]:
            if line and not line.startswith((" ", "Traceback", "\x1b")) and ":" in line and "File" not in line:
                failure["server_exception"] = line.strip()[:300]
                break
        if ours:
            failure["server_frame"] = ours[-1][:200]


def check_alive(server: Server) -> tuple[bool, str, str]:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if not server.alive():
        return False, "dead", "dead"
    try:
        answer = server.call("DetectionService", "Detect", pb.DetectRequest(image=small_image(), model_name=MODEL),
                             role="client")
        detect = f"OK {answer.width}x{answer.height} v{answer.model_version}"
    except grpc.RpcError as exc:
        detect = f"{exc.code().name}: {exc.details()}"
    try:
        status = health_pb2_grpc.HealthStub(server.channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
        health = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    except grpc.RpcError as exc:
        health = exc.code().name
    return True, detect, health


# -- role matrix --------------------------------------------------------------------------------------

def allowed_roles(method_path: str) -> tuple[set[str] | None, str]:
    """The roles server/auth.py lets through for /service/Method (None: no authentication on it)."""
    from artdet.server.auth import roles_allowed

    return roles_allowed(method_path) or None, "artdet.server.auth.roles_allowed"


# what the issue asks for, beside what the table says: a client may read the active model
ISSUE_CLIENT_READS = ("ListModels", "GetModel", "DownloadModel")


def role_request(method: str, fixture: dict, image: bytes):
    """A harmless request per RPC (reads, or writes that are refused on validation)."""
    ref = pb.ModelRef(name=MODEL, version=0)
    return {
        "UploadDataset": [],
        "ListDatasets": pb.ListDatasetsRequest(),
        "GetDataset": pb.GetDatasetRequest(name=DATASET),
        "DeleteDataset": pb.DeleteDatasetRequest(name=DATASET, version=999),
        "ListDatasetImages": pb.ListDatasetImagesRequest(name=DATASET, page_size=2),
        "GetDatasetImage": pb.GetDatasetImageRequest(name=DATASET, image_id=1, max_side=64),
        "StartJob": pb.StartJobRequest(dataset_name="no-such-dataset"),
        "GetJob": pb.GetJobRequest(id=fixture["job_id"]),
        "ListJobs": pb.ListJobsRequest(),
        "CancelJob": pb.CancelJobRequest(id="no-such-job"),
        "WatchJob": pb.WatchJobRequest(id=fixture["job_id"]),
        "ListModels": pb.ListModelsRequest(name=MODEL),
        "GetModel": ref,
        "ActivateModel": pb.ModelRef(name=MODEL, version=999),
        "RollbackModel": pb.RollbackModelRequest(name="no-such-model"),
        "DeleteModel": pb.ModelRef(name=MODEL, version=999),
        "DownloadModel": ref,
        "SetClassInfo": pb.SetClassInfoRequest(model=pb.ModelRef(name=MODEL, version=999)),
        "Detect": pb.DetectRequest(image=image, model_name=MODEL),
        "DetectStream": [pb.DetectRequest(image=image, model_name=MODEL)],
    }.get(method)


def run_roles(server: Server, fixture: dict) -> dict:
    image = small_image()
    callers = {"no_token": (), "wrong_token": (("authorization", f"Bearer {WRONG_TOKEN}"),),
               "not_bearer": (("authorization", TOKENS["admin"]),),
               **{role: server.metadata(role) for role in TOKENS}}
    rows, violations, issue_gaps = [], [], []
    for service, method, client_streaming, server_streaming in fuzz.methods():
        path = f"/{service}/{method}"
        allowed, source = allowed_roles(path)
        request = role_request(method, fixture, image)
        if request is None:
            request = [] if client_streaming else fuzz.request_class(service, method)()
        for caller, metadata in callers.items():
            case = fuzz.Case(service, method, "role", request, request_streaming=client_streaming,
                             response_streaming=server_streaming)
            _, outcome = fuzz.send(server.channel, case, metadata)
            if allowed is None:
                expected = "allowed"
            elif caller in ("no_token", "wrong_token", "not_bearer"):
                expected = "UNAUTHENTICATED"
            else:
                expected = "allowed" if caller in allowed else "PERMISSION_DENIED"
            got_denied = outcome.code in ("UNAUTHENTICATED", "PERMISSION_DENIED")
            ok = (not got_denied and outcome.code not in fuzz.BUG_CODES) if expected == "allowed" \
                else outcome.code == expected
            row = {"method": method, "caller": caller, "expected": expected, "code": outcome.code,
                   "ok": ok, "table": source}
            rows.append(row)
            if not ok:
                violations.append({**row, "message": outcome.message[:200]})
            if caller == "client" and method in ISSUE_CLIENT_READS and got_denied:
                issue_gaps.append({"method": method, "code": outcome.code, "message": outcome.message[:200]})
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    for caller, metadata in callers.items():  # health needs no token at all
        try:
            health_pb2_grpc.HealthStub(server.channel).Check(health_pb2.HealthCheckRequest(), metadata=metadata,
                                                             timeout=5)
            code = "OK"
        except grpc.RpcError as exc:
            code = exc.code().name
        row = {"method": "grpc.health.v1.Health/Check", "caller": caller, "expected": "allowed", "code": code,
               "ok": code == "OK", "table": "proto: no auth"}
        rows.append(row)
        if not row["ok"]:
            violations.append(row)
    return {"checks": len(rows), "violations": len(violations), "violation_list": violations,
            "client_active_model_reads_denied": issue_gaps, "matrix": rows}


# -- load ---------------------------------------------------------------------------------------------

def detect_load(server: Server, image: bytes, threads: int, calls: int) -> dict:
    from artdet.tools.bench.serving import percentile

    latencies: list[float] = []
    errors: dict[str, int] = {}
    samples: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker():
        stub = server.stub("DetectionService")
        metadata = server.metadata("client")
        request = pb.DetectRequest(image=image, model_name=MODEL)
        barrier.wait()
        for _ in range(calls):
            started = time.perf_counter()
            try:
                stub.Detect(request, metadata=metadata, timeout=fuzz.DEADLINE_S)
                code = None
            except grpc.RpcError as exc:
                code = f"{exc.code().name}: {exc.details()}"[:200]
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                if code:
                    errors[code.split(":")[0]] = errors.get(code.split(":")[0], 0) + 1
                    if len(samples) < 10 and code not in samples:
                        samples.append(code)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.time()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return {"requests": len(latencies), "errors": sum(errors.values()), "error_codes": errors,
            "error_samples": samples, "p50_ms": round(percentile(latencies, 50), 1),
            "p99_ms": round(percentile(latencies, 99), 1), "seconds": round(time.time() - started, 1)}


def run_load(server: Server, fixture: dict, threads: int, calls: int, log: Callable[[str], None]) -> dict:
    image = small_image()
    report: dict[str, Any] = {"threads": threads, "calls_per_thread": calls}
    report["idle"] = detect_load(server, image, threads, max(calls // 5, 5))
    # during a training job (it also registers v2, used below)
    job = start_job(server, tiny_parameters(iters=4 if calls <= 50 else 60, epochs=1))
    deadline = time.time() + 120
    while time.time() < deadline and server.call("TrainingService", "GetJob", pb.GetJobRequest(id=job.id),
                                                 role="operator").state == pb.JOB_STATE_QUEUED:
        time.sleep(0.2)
    state_before = server.call("TrainingService", "GetJob", pb.GetJobRequest(id=job.id), role="operator").state
    report["during_training"] = detect_load(server, image, threads, calls)
    report["during_training"]["job_state_at_start"] = pb.JobState.Name(state_before)
    load_end = time.time()
    done = wait_job(server, job.id)
    report["during_training"]["job_final_state"] = pb.JobState.Name(done.state)
    load_start = load_end - report["during_training"]["seconds"]
    overlap = max(0.0, min(load_end, done.finished_at) - max(load_start, done.started_at or load_start))
    report["during_training"]["share_of_load_while_training"] = round(overlap / max(load_end - load_start, 1e-9), 2)
    log(f"reliability: load during training {report['during_training']}")
    if done.state != pb.JOB_STATE_SUCCEEDED:
        report["during_activations"] = {"skipped": f"second model not trained: {done.error[:200]}"}
        return report
    versions = (fixture["model_version"], done.model_version)
    stop = threading.Event()
    activations = {"count": 0, "errors": []}

    def flip():
        i = 0
        while not stop.is_set():
            i += 1
            try:
                server.call("ModelService", "ActivateModel", pb.ModelRef(name=MODEL, version=versions[i % 2]),
                            role="operator")
                activations["count"] += 1
            except grpc.RpcError as exc:
                activations["errors"].append(f"{exc.code().name}: {exc.details()}"[:200])
            stop.wait(0.1)

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        report["during_activations"] = detect_load(server, image, threads, calls)
    finally:
        stop.set()
        flipper.join()
    report["during_activations"].update(activations=activations["count"],
                                        activation_errors=activations["errors"][:10])
    server.call("ModelService", "ActivateModel", pb.ModelRef(name=MODEL, version=fixture["model_version"]),
                role="operator")
    fixture["second_model_version"] = done.model_version
    return report


# -- memory -------------------------------------------------------------------------------------------

def twelve_mp_images(width: int = 4000, height: int = 3000) -> dict[str, bytes]:
    """Noisy-ish 12 MP photos: smooth colour fields plus grain, so the PNG is not trivially small."""
    import numpy as np
    from PIL import Image

    from artdet.tools.bench.fuzz import encode

    rng = np.random.default_rng(5)
    small = Image.fromarray(rng.integers(0, 256, (height // 40, width // 40, 3), dtype=np.uint8))
    base = np.asarray(small.resize((width, height), Image.BICUBIC), dtype=np.int16)
    grain = rng.integers(-3, 4, (height, width, 1), dtype=np.int16)
    photo = Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8))
    return {"png": encode(photo, "PNG", compress_level=6), "jpeg": encode(photo, "JPEG", quality=92)}


class RssSampler(threading.Thread):
    def __init__(self, server: Server, every: float = 0.02):
        super().__init__(daemon=True)
        self.server, self.every, self.peak = server, every, 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, self.server.rss_mb())
            except Exception:  # noqa: BLE001 - the process went away
                return
            self.done.wait(self.every)

    def stop(self) -> float:
        self.done.set()
        self.join()
        return round(self.peak, 1)


def concurrent_detects(server: Server, image: bytes, concurrency: int) -> list[str]:
    codes: list[str] = []

    def one():
        try:
            server.call("DetectionService", "Detect", pb.DetectRequest(image=image, model_name=MODEL),
                        role="client", timeout=120)
            codes.append("OK")
        except grpc.RpcError as exc:
            codes.append(f"{exc.code().name}: {exc.details()}"[:160])

    pool = [threading.Thread(target=one) for _ in range(concurrency)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return codes


def run_memory(server: Server, concurrency: int, first: int, second: int, log: Callable[[str], None]) -> dict:
    images = twelve_mp_images()
    report: dict[str, Any] = {"image_bytes": {k: len(v) for k, v in images.items()}, "concurrency": concurrency,
                              "targets": {"peak_mb_mobilenet": PEAK_TARGET_MB, "growth_mb": GROWTH_TARGET_MB}}
    report["rss_start_mb"] = round(server.rss_mb(), 1)
    for kind, image in images.items():
        sampler = RssSampler(server)
        sampler.start()
        codes = concurrent_detects(server, image, concurrency)
        report[f"peak_rss_mb_12mp_{kind}"] = sampler.stop()
        report[f"codes_12mp_{kind}"] = {c: codes.count(c) for c in set(codes)}
        log(f"reliability: 8 x 12 MP {kind}: peak RSS {report[f'peak_rss_mb_12mp_{kind}']} MB, {codes[:2]}")
    report["peak_rss_mb"] = max(report["peak_rss_mb_12mp_png"], report["peak_rss_mb_12mp_jpeg"])
    report["peak_within_target"] = report["peak_rss_mb"] < PEAK_TARGET_MB
    # mixed traffic: mostly phone-sized images, some garbage, an occasional 12 MP JPEG
    generator = fuzz.ImageFactory(3)
    rng = random.Random(3)
    codes: dict[str, int] = {}

    def mixed(n: int) -> None:
        stub = server.stub("DetectionService")
        for i in range(n):
            if i % 25 == 0:
                image = images["jpeg"]
            elif i % 5 == 0:
                image = generator.mutate(rng)[1]
                if len(image) > 1_000_000:
                    image = generator.small_png
            else:
                image = rng.choice((generator.small_jpeg, generator.small_png, generator.small_webp))
            try:
                stub.Detect(pb.DetectRequest(image=image, model_name=MODEL), metadata=server.metadata("client"),
                            timeout=60)
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
            codes[code] = codes.get(code, 0) + 1

    mixed(first)
    report[f"rss_after_{first}_mb"] = round(server.rss_mb(), 1)
    mixed(second - first)
    report[f"rss_after_{second}_mb"] = round(server.rss_mb(), 1)
    report["mixed_counts"] = [first, second]
    report["growth_mb"] = round(report[f"rss_after_{second}_mb"] - report[f"rss_after_{first}_mb"], 1)
    report["growth_within_target"] = report["growth_mb"] < GROWTH_TARGET_MB
    report["mixed_codes"] = codes
    return report


# -- faults -------------------------------------------------------------------------------------------

def fault_points() -> tuple[list[str], str]:
    """The points the server's ARTDET_FAULT hook knows, read from its source: ([], why) when there is none."""
    modules = []
    for path in sorted((ROOT / "server").glob("*.py")) + sorted((ROOT / "detector").glob("*.py")):
        text = path.read_text(errors="replace")
        if "ARTDET_FAULT" in text:
            modules.append((path, text))
    if not modules:
        return [], "not available: no ARTDET_FAULT hook in server/ (or detector/)"
    for path, text in modules:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001
            continue
        for attribute in ("FAULT_POINTS", "POINTS", "FAULTS", "KNOWN_POINTS"):
            value = getattr(module, attribute, None)
            if isinstance(value, (list, tuple, set, frozenset, dict)) and value:
                return sorted(value), f"{name}.{attribute}"
    points: set[str] = set()
    for path in sorted((ROOT / "server").glob("*.py")) + sorted((ROOT / "detector").glob("*.py")):
        text = path.read_text(errors="replace")
        points |= set(re.findall(r"\bfault(?:_point)?\(\s*[\"']([a-z][a-z0-9_-]*)[\"']", text))
    if points:
        return sorted(points), "calls fault('...') in the source"
    return [], f"not available: ARTDET_FAULT in {', '.join(p.name for p, _ in modules)} but no list of points"


def snapshot(server: Server) -> dict:
    datasets = server.call("DatasetService", "ListDatasets", pb.ListDatasetsRequest(), role="annotator").datasets
    models = server.call("ModelService", "ListModels", pb.ListModelsRequest(), role="operator").models
    jobs = server.call("TrainingService", "ListJobs", pb.ListJobsRequest(), role="operator").jobs
    return {"datasets": sorted((d.name, d.version, d.sha256) for d in datasets),
            "models": sorted((m.name, m.version, m.sha256) for m in models),
            "active": sorted((m.name, m.version) for m in models if m.active),
            "jobs": [(j.id, pb.JobState.Name(j.state), j.model_version) for j in jobs]}


def download_ok(server: Server, name: str, version: int) -> bool:
    import hashlib

    digest, sent = hashlib.sha256(), ""
    try:
        for chunk in server.stub("ModelService").DownloadModel(pb.ModelRef(name=name, version=version),
                                                              metadata=server.metadata("operator"), timeout=60):
            digest.update(chunk.data)
            sent = chunk.sha256 or sent
    except grpc.RpcError:
        return False
    return digest.hexdigest() == sent


def action_for(point: str) -> str:
    if "dataset" in point or "upload" in point:
        return "upload"
    if "activ" in point or "rollback" in point:
        return "activate"
    return "train"


def wait_killed(server: Server, job_id: str = "", timeout: float = 300) -> bool:
    """True once the process is gone; False when the action finished (its job ended) and it is still up."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.wait_dead(0.5):
            return True
        if not job_id:
            return server.wait_dead(5)
        try:
            job = server.call("TrainingService", "GetJob", pb.GetJobRequest(id=job_id), role="operator", timeout=5)
        except grpc.RpcError:
            continue
        if job.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED):
            return server.wait_dead(5)
    return False


def run_fault(point: str, base: Path, work: Path, fixture: dict, log: Callable[[str], None]) -> dict:
    data = work / f"fault-{point}"
    shutil.copytree(base, data)
    before_server = Server(data).start()
    before = snapshot(before_server)
    before_server.stop()
    server = Server(data, env={"ARTDET_FAULT": point}).start()
    action = action_for(point)
    row: dict[str, Any] = {"point": point, "action": action}
    job_id, target = "", 0
    try:
        if action == "upload":
            from artdet.tools.experiments.synthetic import write_shapes_dataset

            annotations = write_shapes_dataset(work / f"fault-{point}-set", images=4, seed=23,
                                               name="annotations.json")
            try:
                push(server, annotations, name="faulty")
            except grpc.RpcError as exc:
                row["answer"] = exc.code().name
        elif action == "activate":
            target = version = fixture.get("second_model_version") or fixture["model_version"]
            try:
                server.call("ModelService", "ActivateModel", pb.ModelRef(name=MODEL, version=version),
                            role="operator")
            except grpc.RpcError as exc:
                row["answer"] = exc.code().name
        else:
            job_id = start_job(server).id
        row["killed"] = wait_killed(server, job_id)
    finally:
        if server.alive():
            server.kill()
    if not row["killed"]:
        row.update(survived=False, data_lost=False, note="the fault point was never reached (server still up)")
        return row
    server = Server(data).start()
    try:
        if job_id:
            try:
                final = wait_job(server, job_id, timeout=300)
                row["job_after_restart"] = pb.JobState.Name(final.state)
                row["job_restarts"] = final.restarts
            except (TimeoutError, grpc.RpcError) as exc:
                row["job_after_restart"] = f"not finished: {exc}"[:200]
        after = snapshot(server)
        lost = [d for d in before["datasets"] if d not in after["datasets"]] + \
               [m for m in before["models"] if m not in after["models"]]
        broken = [m[:2] for m in after["models"] if not download_ok(server, m[0], m[1])]
        jobs = [j for j in after["jobs"] if j[0] == job_id] if job_id else []
        models_of_job = [m for m in server.call("ModelService", "ListModels", pb.ListModelsRequest(),
                                                role="operator").models if job_id and m.job_id == job_id]
        # active versions: unchanged, or (activation) switched to the target; never none or a third one
        acceptable = set(before["active"]) | ({(MODEL, target)} if action == "activate" else set())
        active_ok = set(after["active"]) <= acceptable and \
            {a[0] for a in before["active"]} == {a[0] for a in after["active"]}
        row["active_ok"] = active_ok
        partial = [d for d in after["datasets"] if d[0] == "faulty"]
        if action == "upload":  # the same upload again must succeed (and be whole)
            try:
                again = push(server, annotations, name="faulty")
                row["upload_again"] = f"v{again.version} images={again.statistics.images}"
            except grpc.RpcError as exc:
                row["upload_again"] = f"{exc.code().name}: {exc.details()}"[:200]
        alive, detect, _ = check_alive(server)
        row.update(lost=lost, broken_models=broken, job_registered=len(jobs), models_from_job=len(models_of_job),
                   active_before=before["active"], active_after=after["active"], faulty_dataset_rows=partial,
                   detect_after=detect)
        row["data_lost"] = bool(lost or broken)
        upload_ok = action != "upload" or str(row.get("upload_again", "")).startswith("v")
        job_done = upload_ok and (not job_id or row.get("job_after_restart") == "JOB_STATE_SUCCEEDED"
                                  and len(models_of_job) == 1)
        row["survived"] = alive and not row["data_lost"] and active_ok and (not job_id or len(jobs) == 1) and \
            len(models_of_job) <= 1 and job_done and detect.startswith("OK")
    finally:
        server.stop()
    return row


def serve_flags() -> set[str]:
    from artdet.server.app import ServerConfig
    import dataclasses

    return {f.name for f in dataclasses.fields(ServerConfig)}


def run_disk_floor(base: Path, work: Path) -> dict:
    flags = serve_flags()
    if "min_free_mb" not in flags:
        return {"status": "not available: no --min-free-mb (ServerConfig.min_free_mb) yet"}
    data = work / "disk-floor"
    shutil.copytree(base, data)
    free_mb = shutil.disk_usage(data).free // 2**20
    server = Server(data, "--min-free-mb", str(free_mb + 100_000)).start()
    report: dict[str, Any] = {"status": "run", "free_mb": free_mb, "floor_mb": free_mb + 100_000}
    try:
        from artdet.tools.experiments.synthetic import write_shapes_dataset

        annotations = write_shapes_dataset(work / "disk-floor-set", images=3, seed=31, name="annotations.json")
        for name, call in (("UploadDataset", lambda: push(server, annotations, name="diskfull")),
                           ("StartJob", lambda: start_job(server))):
            try:
                call()
                report[name] = "OK"
            except grpc.RpcError as exc:
                report[name] = exc.code().name
                report[f"{name}_message"] = (exc.details() or "")[:200]
        report["detect_still_works"] = check_alive(server)[1]
        report["ok"] = report["UploadDataset"] == "RESOURCE_EXHAUSTED" and report["StartJob"] == "RESOURCE_EXHAUSTED"
    finally:
        server.stop()
    return report


def run_db_rebuild(base: Path, work: Path) -> dict:
    data = work / "db-deleted"
    shutil.copytree(base, data)
    server = Server(data).start()
    before = snapshot(server)
    server.stop()
    for suffix in ("", "-wal", "-shm", "-journal"):
        (data / f"artdet.db{suffix}").unlink(missing_ok=True)
    report: dict[str, Any] = {"datasets_before": len(before["datasets"]), "models_before": len(before["models"])}
    try:
        server = Server(data).start()
    except RuntimeError as exc:
        report.update(started=False, error=str(exc)[-500:])
        return report
    try:
        after = snapshot(server)
        report.update(started=True, datasets_after=len(after["datasets"]), models_after=len(after["models"]),
                      active_after=after["active"], detect_after=check_alive(server)[1],
                      datasets_recovered=sorted(set(before["datasets"]) & set(after["datasets"])) == before["datasets"],
                      models_recovered=sorted(set(before["models"]) & set(after["models"])) == before["models"])
    except grpc.RpcError as exc:
        report.update(started=True, error=f"{exc.code().name}: {exc.details()}"[:300])
    finally:
        server.stop()
    return report


def run_faults(base: Path, work: Path, fixture: dict, log: Callable[[str], None]) -> dict:
    points, source = fault_points()
    report: dict[str, Any] = {"source": source, "points": points, "kills": []}
    for point in points:
        started = time.time()
        try:
            row = run_fault(point, base, work, fixture, log)
        except Exception as exc:  # noqa: BLE001 - one broken point must not end the run
            row = {"point": point, "survived": False, "data_lost": None, "error": f"{type(exc).__name__}: {exc}"[:300]}
        row["seconds"] = round(time.time() - started, 1)
        report["kills"].append(row)
        log(f"reliability: fault {point}: {row}")
    report["faults_survived"] = sum(bool(r.get("survived")) for r in report["kills"])
    report["faults_with_data_lost"] = sum(bool(r.get("data_lost")) for r in report["kills"])
    report["disk_full"] = run_disk_floor(base, work)
    report["db_deleted"] = run_db_rebuild(base, work)
    return report


# -- the run -----------------------------------------------------------------------------------------

def settings(quick: bool) -> dict:
    return {"fuzz_cases": 600 if quick else 4000, "load_threads": 8, "load_calls": 25 if quick else 250,
            "memory_concurrency": 8, "mixed": (30, 150) if quick else (100, 1000), "huge_side": 6000}


def run_reliability(quick: bool, out: Path | None, seed: int = 0, skip: tuple[str, ...] = (),
                    fuzz_cases: int | None = None, keep: Path | None = None) -> dict:
    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    config = settings(quick)
    if fuzz_cases:
        config["fuzz_cases"] = fuzz_cases
    report: dict[str, Any] = {"quick": quick, "seed": seed, "settings": {**config, "mixed": list(config["mixed"])}}
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="artdet-reliability-")) if keep is None else keep
    tmp.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        if out:
            from artdet.detector.files import save_json

            save_json({**report, "partial": True}, out)

    server = Server(tmp / "data").start()
    try:
        fixture = prepare(server, tmp, log)
        report["fixture"] = {k: v for k, v in fixture.items() if k != "annotations"}
        report["server_start_rss_mb"] = round(server.rss_mb(), 1)
        if "roles" not in skip:
            report["roles"] = run_roles(server, fixture)
            save()
            log(f"reliability: role matrix {report['roles']['checks']} checks, "
                f"{report['roles']['violations']} violations")
        if "fuzz" not in skip:
            report["fuzz"] = run_fuzz(server, fixture, config["fuzz_cases"], seed, config["huge_side"], log)
            save()
            log(f"reliability: fuzz done in {report['fuzz']['seconds']} s")
            if not server.alive():
                server.restart()
        if "load" not in skip:
            report["load"] = run_load(server, fixture, config["load_threads"], config["load_calls"], log)
            save()
        if "memory" not in skip:
            server.restart()  # a clean process: fuzz and load allocations do not count
            report["memory"] = run_memory(server, config["memory_concurrency"], *config["mixed"], log)
            save()
        server.stop()
        if "faults" not in skip:
            base = tmp / "baseline"
            shutil.copytree(tmp / "data", base)
            report["faults"] = run_faults(base, tmp, fixture, log)
    finally:
        server.stop()
        report["server_log_tail"] = server.log_tail(2000)
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    report["seconds"] = round(time.time() - started, 1)
    if out:
        from artdet.detector.files import save_json

        save_json(report, out)
    print(format_table(report))
    return report


def format_table(report: dict) -> str:
    rows: list[tuple[str, Any, str]] = []
    f = report.get("fuzz")
    if f:
        rows += [("fuzz requests", f["requests"], f"seed {f['seed']}, {len(f['methods_covered'])}/"
                  f"{f['methods_total']} RPCs"),
                 ("fuzz server deaths", f["server_deaths"], "target 0"),
                 ("fuzz INTERNAL answers", f["internal"], "target 0"),
                 ("fuzz UNKNOWN answers", f["unknown"], "target 0"),
                 ("fuzz hangs > 10 s", f["hangs_over_10s"], "target 0"),
                 ("fuzz RSS before / after MB", f"{f['rss_before_mb']} / {f['rss_after_mb']}", ""),
                 ("after fuzz: Detect / health", f"{f['detect_after'][:20]} / {f['health_after']}", "")]
    r = report.get("roles")
    if r:
        rows += [("role matrix checks", r["checks"], ""), ("role matrix violations", r["violations"], "target 0"),
                 ("client reads of active model denied", len(r["client_active_model_reads_denied"]),
                  "issue wants 0")]
    load = report.get("load")
    if load:
        for phase in ("idle", "during_training", "during_activations"):
            p = load.get(phase, {})
            if "p50_ms" in p:
                rows.append((f"load {phase} errors / requests", f"{p['errors']} / {p['requests']}", "target 0"))
                rows.append((f"load {phase} p50 / p99 ms", f"{p['p50_ms']} / {p['p99_ms']}", ""))
            elif p:
                rows.append((f"load {phase}", p.get("skipped", "-"), ""))
    m = report.get("memory")
    if m:
        a, b = m["mixed_counts"]
        rows += [("memory peak RSS 8x12MP PNG MB", m["peak_rss_mb_12mp_png"], f"target < {PEAK_TARGET_MB}"),
                 ("memory peak RSS 8x12MP JPEG MB", m["peak_rss_mb_12mp_jpeg"], f"target < {PEAK_TARGET_MB}"),
                 (f"memory RSS after {a} / {b} Detects MB", f"{m[f'rss_after_{a}_mb']} / {m[f'rss_after_{b}_mb']}",
                  ""),
                 ("memory growth MB", m["growth_mb"], f"target < {GROWTH_TARGET_MB}")]
    fa = report.get("faults")
    if fa:
        if fa["points"]:
            rows += [("faults injected", len(fa["points"]), fa["source"]),
                     ("faults survived", fa["faults_survived"], f"target {len(fa['points'])}"),
                     ("faults with data lost", fa["faults_with_data_lost"], "target 0")]
        else:
            rows.append(("faults (SIGKILL points)", "not available", fa["source"][:60]))
        d = fa["disk_full"]
        rows.append(("disk full (min-free floor)", "ok" if d.get("ok") else d.get("status", "FAILED")
                     if d.get("status") != "run" else f"Upload {d.get('UploadDataset')}, StartJob {d.get('StartJob')}",
                     "want RESOURCE_EXHAUSTED"))
        db = fa["db_deleted"]
        rows.append(("DB deleted: datasets / models back", f"{db.get('datasets_after', '-')}/{db['datasets_before']}"
                     f" / {db.get('models_after', '-')}/{db['models_before']}", db.get("error", "")[:60]))
    width = max(len(r[0]) for r in rows) + 2 if rows else 10
    lines = [f"{name:<{width}}{str(value):>24}  {note}" for name, value, note in rows]
    failures = (f or {}).get("failures", [])
    if failures:
        lines.append("")
        lines.append(f"fuzz failures: {len(failures)} distinct (method, case, code, message), all in the JSON; "
                     f"grouped by code + message:")
        for group in f.get("failure_groups", []):
            cases = group["cases"] if group["family"] == "messages" else sorted({c for c in group["cases"]})
            lines.append(f"  {group['code']} x{group['count']} ({group['family']}): {group['message'][:120]}")
            lines.append(f"      methods: {', '.join(group['methods'])}")
            lines.append(f"      cases: {'; '.join(cases)[:400]}")
        for item in failures:
            if item.get("server_exception"):
                lines.append(f"  {item['method']} [{item['case'][:60]}] -> {item['server_exception'][:160]}"
                             f"\n      at {item.get('server_frame', '?')[:150]}")
    for death in (f or {}).get("deaths", []):
        lines.append(f"  DEATH {death['method']} {death['case'][:80]}")
    for v in (r or {}).get("violation_list", []):
        lines.append(f"  ROLE {v['method']:<14} {v['caller']:<12} expected {v['expected']}, got {v['code']}")
    lines.append(f"total {report.get('seconds', '-')} s")
    return "\n".join(lines)


def cmd_reliability(args) -> int:
    skip = tuple(args.skip.split(",")) if args.skip else ()
    run_reliability(args.quick, Path(args.json) if args.json else None, args.seed, skip,
                             args.fuzz_cases, Path(args.keep) if args.keep else None)
    return 0  # a benchmark: findings are reported, not judged
