"""Which exceptions are the user's to fix (printed as one line) rather than bugs (tracebacks)."""

from __future__ import annotations

from detector.dataset import DatasetValidationError
from detector.images import ImageDecodeError
from detector.inference import ModelLoadError

USER_ERRORS: tuple[type[BaseException], ...] = (
    DatasetValidationError, ImageDecodeError, ModelLoadError, FileNotFoundError, ValueError,
)


def _engine_errors() -> tuple[type[BaseException], ...]:
    """Errors defined in torch-importing modules, only if those are already loaded."""
    import sys

    found: list[type[BaseException]] = []
    for module, names in (("detector.models", ("WeightsUnavailableError", "IncompatibleWeightsError")),
                          ("detector.export", ("ExportParityError",)),
                          ("detector.trainer", ("TrainingDivergedError",))):
        if module in sys.modules:
            found.extend(getattr(sys.modules[module], n) for n in names)
    return tuple(found)


def describe(exc: BaseException) -> str | None:
    if isinstance(exc, USER_ERRORS + _engine_errors()):
        return str(exc)
    return None
