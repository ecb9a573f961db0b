"""Fault injection for crash tests: ARTDET_FAULT=<point> makes the process that reaches that point SIGKILL
itself, leaving the data directory exactly as a power cut there would. A no-op unless the variable names
the point. Torch-free, import-free.

Points:
    dataset-renamed    server: a dataset folder renamed into place, its row not yet inserted
    model-renamed      server: a model version folder renamed into place, its row not yet inserted
    exported           server: a worker exported ONNX and wrote result.json; the model is not yet registered
    checkpoint-saved   worker: the first checkpoint of stage 2 is on disk (the worker takes its server down
                       with it, as a machine crash would)
    activated          server: active.json written
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "ARTDET_FAULT"
POINTS = ("dataset-renamed", "model-renamed", "exported", "checkpoint-saved", "activated")


def fault_point(name: str, with_parent: bool = False) -> None:
    """SIGKILL this process (and first its parent, when `with_parent`) if ARTDET_FAULT names `name`."""
    if os.environ.get(FAULT_ENV) != name:
        return
    if with_parent and os.getppid() > 1:
        os.kill(os.getppid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
