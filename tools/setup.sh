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
.venv/bin/python -m pip install --quiet -e ".[train,serve,test]"
# the second-language client the tests use to prove the API is usable beyond Python
if command -v npm >/dev/null 2>&1; then
  npm ci --prefix tests/node_client --no-audit --no-fund --loglevel=error
fi
