"""Dataset upload over loopback: MB/s and the server's memory growth."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from artdet.tools.bench.processes import BenchServer, free_port
from artdet.tools.client import connect, push_dataset


def write_noise_dataset(root: Path, megabytes: int, size=(1024, 768)) -> tuple[Path, int]:
    """JPEGs of noise (they barely compress) adding up to about `megabytes`, one box each."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    total, index = 0, 0
    while total < megabytes << 20:
        index += 1
        path = root / "images" / f"{index:05d}.jpg"
        Image.fromarray(np.roll(tile, index * 7, axis=1)).save(path, quality=95)
        total += path.stat().st_size
        coco["images"].append({"id": index, "file_name": f"images/{index:05d}.jpg", "width": size[0],
                               "height": size[1]})
        coco["annotations"].append({"id": index, "image_id": index, "category_id": 1, "bbox": [10, 10, 100, 80]})
    (root / "annotations.json").write_text(json.dumps(coco))
    return root / "annotations.json", total


def bench_upload(work_dir: Path, megabytes: int) -> dict:
    annotations, total = write_noise_dataset(work_dir / "upload", megabytes)
    server = BenchServer("--data-dir", str(work_dir / "server-data"), port=free_port())
    try:
        before = server.rss_mb()
        started = time.perf_counter()
        dataset = push_dataset(connect(server.address), "bench", annotations, progress=False)
        seconds = time.perf_counter() - started
        peak = server.peak_rss_mb()
    finally:
        server.stop()
    return {"upload_mb": round(total / 2**20, 1), "upload_images": dataset.statistics.images,
            "upload_mb_s": round(total / 2**20 / seconds, 1), "upload_rss_growth_mb": round(peak - before, 1)}
