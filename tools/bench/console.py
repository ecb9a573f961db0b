"""`artdet bench --console`: the web console in headless Chromium against a real `artdet serve`.

- page load to interactive: navigation start to the console's `artdet-interactive` mark (signed in, the first
  page's data fetched and drawn), over repeated loads of one tab;
- job progress latency: a training job's events, from the time the worker wrote each one (its `time`) to the
  moment the page showed it (the page's `artdet:shown` event); one clock, one machine.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from artdet.tools.bench.browser import browser_missing, chromium

ROOT = Path(__file__).resolve().parents[2]


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return {"n": len(values), "p50": round(statistics.median(values), 1), "p10": round(pick(0.1), 1),
            "p90": round(pick(0.9), 1), "max": round(ordered[-1], 1)}


def _serve(data_dir: Path) -> tuple[subprocess.Popen, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ARTDET_TOKENS"}  # loopback, no tokens: sign in with ""
    process = subprocess.Popen([sys.executable, "-m", "artdet.tools.cli", "serve", "--data-dir", str(data_dir),
                                "--port", "0", "--console-port", "0", "--min-free-mb", "0"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    console = ""
    for line in process.stdout:
        if line.startswith("artdet: web console on "):
            console = line.split()[-1]
        if line.startswith("artdet: ready on "):
            return process, line.split()[-1], console
    raise RuntimeError("artdet serve did not start")


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def page_loads(driver, url: str, loads: int) -> list[float]:
    driver.get(url)
    driver.execute_script("sessionStorage.setItem('artdet-token', '')")  # signed in from the next load on
    times = []
    for _ in range(loads):
        driver.get(url)
        deadline = time.time() + 30
        while True:
            mark = driver.execute_script(
                "const m = performance.getEntriesByName('artdet-interactive'); return m.length ? m[0].startTime : null")
            if mark is not None:
                times.append(mark)
                break
            if time.time() > deadline:
                raise RuntimeError("the console never became interactive")
            time.sleep(0.02)
    return times


def job_latency(driver, console: str, dataset: str, steps: int) -> list[float]:
    job = _post(f"{console}api/jobs", {"dataset_name": dataset, "weights": "none", "parameters": {
        "stage1_epochs": 1, "stage2_epochs": 1, "max_iters_per_epoch": steps // 2, "batch_size": 2, "max_size": 128,
        "extra": {"workers": "0"}}})
    opened = time.time()
    driver.execute_script("window.shownEvents = [];"
                          "document.addEventListener('artdet:shown', e => window.shownEvents.push("
                          "[e.detail.type, e.detail.time, Date.now() / 1000]));"
                          "show('training'); watch(arguments[0]);", job["id"])
    deadline = time.time() + 1800
    while time.time() < deadline:
        shown = driver.execute_script("return window.shownEvents")
        if shown and shown[-1][0] == "finished":
            break
        time.sleep(0.5)
    else:
        raise RuntimeError("the job did not finish within 30 minutes")
    live = [(kind, written, seen) for kind, written, seen in shown if written > opened + 1.0]
    return [(seen - written) * 1000 for kind, written, seen in live if kind == "step"]


def run_console_bench(loads: int = 30, steps: int = 40, json_out: Path | None = None) -> dict:
    missing = browser_missing()
    if missing:
        raise RuntimeError(f"the console benchmark needs a headless browser: {missing}")
    from artdet.tools.client import connect, push_dataset
    from artdet.tools.experiments.synthetic import write_shapes_dataset

    with tempfile.TemporaryDirectory(prefix="artdet-console-bench-") as work:
        work = Path(work)
        process, address, console = _serve(work / "data")
        driver = chromium()
        try:
            shapes = write_shapes_dataset(work / "shapes", images=24, seed=3, name="annotations.json")
            push_dataset(connect(address), "shapes", shapes, progress=False)
            report = {"page_load_to_interactive_ms": _spread(page_loads(driver, console, loads)),
                      "job_event_to_page_ms": _spread(job_latency(driver, console, "shapes", steps)),
                      "browser": driver.capabilities.get("browserVersion", "")}
        finally:
            driver.quit()
            process.terminate()
            process.wait(timeout=30)
    print(f"{'console':<34}{'p50':>9}{'p10':>9}{'p90':>9}{'max':>9}{'n':>6}")
    for key in ("page_load_to_interactive_ms", "job_event_to_page_ms"):
        row = report[key]
        print(f"{key:<34}{row['p50']:>9}{row['p10']:>9}{row['p90']:>9}{row['max']:>9}{row['n']:>6}")
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))
    return report
