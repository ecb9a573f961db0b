"""Download torchvision's COCO weights for every architecture into TORCH_HOME (Docker build, first setup).

    python -m artdet.tools.fetch_weights [ARCH ...]

Offline it says so and exits 0: the service still starts, and `--weights coco` reports the cache path.
"""

from __future__ import annotations

import sys

from artdet.detector.architectures import ARCHITECTURES
from artdet.detector.models import WeightsUnavailableError, load_coco_state, coco_cache_path


def main(argv: list[str]) -> int:
    names = argv or sorted(ARCHITECTURES)
    for name in names:
        arch = ARCHITECTURES[name]
        try:
            load_coco_state(arch)
            print(f"{name}: {coco_cache_path(arch)}")
        except WeightsUnavailableError as exc:
            print(f"{name}: not fetched ({str(exc).splitlines()[0][:200]})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
