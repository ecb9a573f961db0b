#!/usr/bin/env bash
# Create .venv and install artdet with everything training, serving and the tests need.
# Idempotent: a second run only checks what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first, spelled exactly so pip takes the pinned wheels (CUDA build on x86_64; runs on CPU too)
.venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install --quiet -e ".[train,serve,console,test]"
# the second-language client the tests use to prove the API is usable beyond Python (the test fails without it)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Node.js and npm (apt-get) for the Node client test" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "setup: Node.js and npm are required by the Node client test (tests/node_client); install them" >&2
    echo "       (Debian/Ubuntu: sudo apt-get install -y nodejs npm) and run tools/setup.sh again" >&2
    exit 1
  fi
fi
# the console's browser tests drive Debian's Chromium through its chromedriver (no browser download)
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium and chromium-driver (apt-get) for the console's browser tests" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "setup: the console's browser tests need Chromium and its driver; they skip, saying so, until" >&2
    echo "       they are installed (Debian/Ubuntu: sudo apt-get install -y chromium chromium-driver)" >&2
  fi
fi
npm ci --prefix tests/node_client --no-audit --no-fund --loglevel=error
# Label Studio for the annotation-loop test, in an environment of its own (its pins clash with artdet's)
if [ ! -x .venv-label-studio/bin/label-studio ]; then
  echo "setup: installing Label Studio in .venv-label-studio for the annotation-loop test (about 1 GB)" >&2
  "$PYTHON" -m venv .venv-label-studio
  .venv-label-studio/bin/python -m pip install --quiet --upgrade pip
  .venv-label-studio/bin/python -m pip install --quiet label-studio==1.23.2 label-studio-sdk==2.1.2
fi
