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


def test_variants_bench_reports_size_latency_and_accuracy_per_variant(tmp_path, overfit_run):
    out = tmp_path / "variants.json"
    result = artdet("bench", "--variants", "--quick", "--models", TINY_ARCH, "--trained", str(overfit_run),
                    "--trained-val", str(overfit_run.parent / "train.json"), "--json", out, timeout=1200)
    report = json.loads(out.read_text())
    for name in (TINY_ARCH, "trained"):
        figures = report["models"][name]
        assert figures["int8"]["size_mb"] < figures["fp16"]["size_mb"] < figures["fp32"]["size_mb"]
        for kind in ("fp32", "int8", "fp16"):
            row = figures[kind]
            assert row["calls"] == report["rounds"] * figures["images"]  # every image, every round
            assert row["iqr_ms"][0] <= row["p50_ms"] <= row["iqr_ms"][1]
        assert figures["fp32"]["p50_ratio_to_fp32"] == 1.0
    assert all(0 <= report["models"]["trained"][k]["ap50"] <= 1 for k in ("fp32", "int8", "fp16"))
    assert "map" not in report["models"][TINY_ARCH]["fp32"]  # fabricated weights: no accuracy figure
    assert "int8:" in result.stdout and "× fp32" in result.stdout
