"""`artdet bench` runs end to end and reports every figure the benchmark issue names (values are not judged)."""

from __future__ import annotations

import json

from tests.conftest import TINY_ARCH, artdet

REQUIRED = ("detect_grpc_p50_ms", "detect_grpc_p99_ms", "detect_ort_p50_ms", "detect_torch_p50_ms",
            "throughput_grpc_best_rps", "throughput_ort_best_rps", "serve_ready_s", "serve_rss_mb",
            "train_stage1_img_s", "train_stage2_img_s", "train_plain_loop_img_s", "train_data_wait_share",
            "train_peak_rss_mb")


def test_quick_bench_reports_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    result = artdet("bench", "--quick", "--models", TINY_ARCH, "--json", out, timeout=1200)
    report = json.loads(out.read_text())
    figures = report[TINY_ARCH]
    for key in REQUIRED:
        assert isinstance(figures[key], (int, float)) and figures[key] > 0, key
    assert 0 <= figures["train_data_wait_share"] < 1
    assert report["upload_mb_s"] > 0 and "upload_rss_growth_mb" in report
    assert "detect_grpc_p50_ms" in result.stdout  # the printed table
