"""The committed generated code matches proto/artdet/v1/artdet.proto."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_generated_code_is_current(tmp_path):
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", "proto", f"--python_out={tmp_path}",
                    f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", "proto/artdet/v1/artdet.proto"],
                   cwd=ROOT, check=True)
    for name in ("artdet_pb2.py", "artdet_pb2.pyi", "artdet_pb2_grpc.py"):
        fresh = (tmp_path / "artdet" / "v1" / name).read_text()
        assert fresh == (ROOT / "proto" / "artdet" / "v1" / name).read_text(), f"{name} is stale: run tools/gen_proto.sh"
