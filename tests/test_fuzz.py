"""A bounded, seeded fuzz run against a real `artdet serve`: no request may crash the server, hang it, or be
answered INTERNAL / UNKNOWN (a bug); afterwards it still answers Detect and grpc health.

The generator is `artdet bench --reliability`'s (tools/bench/fuzz.py); a failure message lists each distinct
(method, case, code, message) so it can be replayed with the same seed.
"""

from __future__ import annotations

import random

import pytest

from artdet.tools.bench import fuzz
from artdet.tools.bench.reliability import MODEL, Server, annotate_from_log, check_alive, prepare

SEED = 20240601
CASES = 360


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    server = Server(work / "data").start()
    try:
        fixture = prepare(server, work, log=lambda message: None)
        yield server, fixture
    finally:
        server.stop()


def test_fuzz_every_rpc_without_internal_errors_hangs_or_deaths(fuzz_server):
    server, fixture = fuzz_server
    targets = fuzz.Targets(dataset_name="shapes", dataset_version=fixture["dataset_version"], model_name=MODEL,
                           model_version=fixture["model_version"], job_id=fixture["job_id"],
                           class_names=fixture["class_names"])
    # 4,000 x 4,000 "huge but legal" images keep the run short; the benchmark uses 6,000 x 6,000
    generator = fuzz.CaseGenerator(targets, seed=SEED, huge_side=4000)
    result = fuzz.run_cases(server.channel, generator.generate(random.Random(SEED), CASES),
                            server.metadata("admin"), alive=server.alive, restart=None)
    summary = result.summary()

    assert summary["requests"] == CASES or summary["server_deaths"], summary["requests"]
    assert {o.method for o in result.outcomes} == {m[1] for m in fuzz.methods()}  # every RPC was hit
    annotate_from_log(summary["failures"], server.log_tail(10_000_000))  # the server's own exception, if logged
    problems = [f"{f['code']} x{f['count']} {f['method']} [{f['case']}]: {f['message']}"
                + (f"\n    server: {f['server_exception'][:200]}" if f.get("server_exception") else "")
                for f in summary["failures"]]
    problems += [f"server died on {d['method']} [{d['case']}]" for d in summary["deaths"]]
    assert not problems, f"seed {SEED}: {len(problems)} distinct failures:\n" + "\n".join(problems)

    alive, detect, health = check_alive(server)
    assert alive, f"server died:\n{server.log_tail()}"
    assert detect.startswith("OK"), detect
    assert health == "SERVING", health
