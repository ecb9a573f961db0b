"""Detect latency and throughput: gRPC on loopback vs in-process onnxruntime vs PyTorch eager."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from artdet.detector.config import SCORE_THRESHOLD
from artdet.detector.files import save_json
from artdet.detector.inference import Detector
from artdet.server.model_repository import write_active
from artdet.tools.bench.processes import BenchServer, free_port


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def latencies_ms(call: Callable[[], object], iterations: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def throughput_rps(call: Callable[[], object], clients: int, calls_per_client: int) -> float:
    call()
    barrier = threading.Barrier(clients + 1)

    def worker():
        barrier.wait()
        for _ in range(calls_per_client):
            call()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return clients * calls_per_client / (time.perf_counter() - started)


def model_directory(onnx_path: Path, root: Path, name: str = "bench") -> Path:
    """A models directory (the registry's layout) holding one active version, for a Detect-only replica."""
    folder = root / name / "1"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.onnx"
    if not target.exists():
        target.symlink_to(onnx_path.resolve())
    save_json({"name": name, "version": 1}, folder / "model.json")
    write_active(root, name, 1, [1])
    return root


def grpc_detect_call(address: str, image: bytes):
    import grpc

    from artdet.v1 import artdet_pb2 as pb
    from artdet.v1 import artdet_pb2_grpc as rpc

    stub = rpc.DetectionServiceStub(grpc.insecure_channel(address))
    request = pb.DetectRequest(image=image, score_threshold=SCORE_THRESHOLD)
    return lambda: stub.Detect(request, timeout=60)


def torch_eager_call(checkpoint: Path, image: bytes, threads: int):
    import torch

    from artdet.detector.checkpoint import load_torch
    from artdet.detector.export import export_ready_model
    from artdet.detector.images import decode_image
    from artdet.detector.torch_data import to_tensor

    torch.set_num_threads(threads)
    model = export_ready_model(load_torch(checkpoint))

    def call():
        with torch.inference_mode():
            return model([to_tensor(decode_image(image))])

    return call


def bench_serving(onnx_path: Path, checkpoint: Path, image: bytes, work_dir: Path, threads: int,
                  iterations: int, levels: tuple[int, ...], calls_per_client: int) -> dict:
    results: dict = {}
    detector = Detector(onnx_path, intra_op_threads=threads)
    ort = latencies_ms(lambda: detector.detect(image), iterations)
    eager = latencies_ms(torch_eager_call(checkpoint, image, threads), iterations)
    models = model_directory(onnx_path, work_dir / "models")
    server = BenchServer("--model-dir", str(models), "--ort-intra-threads", str(threads), port=free_port())
    try:
        results.update(serve_ready_s=round(server.ready_s, 3))
        grpc_call = grpc_detect_call(server.address, image)
        remote = latencies_ms(grpc_call, iterations)
        results["serve_rss_mb"] = round(server.rss_mb(), 1)
    finally:
        server.stop()
    results.update(
        detect_grpc_p50_ms=round(percentile(remote, 50), 2), detect_grpc_p99_ms=round(percentile(remote, 99), 2),
        detect_ort_p50_ms=round(percentile(ort, 50), 2), detect_ort_p99_ms=round(percentile(ort, 99), 2),
        detect_torch_p50_ms=round(percentile(eager, 50), 2), detect_torch_p99_ms=round(percentile(eager, 99), 2),
    )
    results.update(_camera_photo(onnx_path, threads, iterations))
    results.update(_throughput(onnx_path, models, image, threads, levels, calls_per_client))
    return results


def camera_photo_jpeg(width: int = 4000, height: int = 3000) -> bytes:
    """A phone-camera-sized JPEG (12 MP): what the mobile app sends when it does not resize first."""
    import io

    from PIL import Image

    rng = np.random.default_rng(1)
    small = Image.fromarray(rng.integers(0, 256, (height // 50, width // 50, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    small.resize((width, height), Image.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _camera_photo(onnx_path: Path, threads: int, iterations: int) -> dict:
    """12 MP input with and without reduced-scale JPEG decoding (the network shrinks it anyway)."""
    photo = camera_photo_jpeg()
    rows = {}
    for draft in (False, True):
        detector = Detector(onnx_path, intra_op_threads=threads, reduced_decoding=draft)
        samples = latencies_ms(lambda: detector.detect(photo), max(5, iterations // 3))
        rows[f"detect_ort_12mp_p50_ms_{'draft' if draft else 'full_decode'}"] = round(percentile(samples, 50), 2)
    return rows


def _throughput(onnx_path: Path, models: Path, image: bytes, threads: int, levels: tuple[int, ...],
                calls_per_client: int) -> dict:
    """Best requests/s over concurrency levels and thread layouts (intra-op threads per session)."""
    layouts = sorted({1, threads})
    table: dict = {"ort": {}, "grpc": {}}
    for intra in layouts:
        detector = Detector(onnx_path, intra_op_threads=intra)
        table["ort"][f"intra{intra}"] = {c: round(throughput_rps(lambda: detector.detect(image), c,
                                                                 calls_per_client), 2) for c in levels}
        server = BenchServer("--model-dir", str(models), "--ort-intra-threads", str(intra), port=free_port())
        try:
            call = grpc_detect_call(server.address, image)
            table["grpc"][f"intra{intra}"] = {c: round(throughput_rps(call, c, calls_per_client), 2) for c in levels}
        finally:
            server.stop()

    def best(kind: str) -> tuple[float, str]:
        return max((rps, f"intra-op {layout[5:]}, {clients} concurrent")
                   for layout, row in table[kind].items() for clients, rps in row.items())

    ort_best, ort_layout = best("ort")
    grpc_best, grpc_layout = best("grpc")
    return {"throughput_ort_best_rps": ort_best, "throughput_ort_best_layout": ort_layout,
            "throughput_grpc_best_rps": grpc_best, "throughput_grpc_best_layout": grpc_layout,
            "throughput_table": table}
