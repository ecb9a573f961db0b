"""Which exceptions are the user's to fix (printed as one line) rather than bugs (tracebacks)."""

from __future__ import annotations

from artdet.detector.errors import ArtdetError

USER_ERRORS: tuple[type[BaseException], ...] = (ArtdetError, FileNotFoundError, ValueError)


def describe(exc: BaseException) -> str | None:
    if isinstance(exc, USER_ERRORS):
        return str(exc)
    return None
