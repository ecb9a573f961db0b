#!/usr/bin/env bash
# Regenerate the Python code for proto/artdet/v1/artdet.proto (committed; a test checks it is current).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-proto}
.venv/bin/python -m grpc_tools.protoc -I proto --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" \
  proto/artdet/v1/artdet.proto
