"""The one error hierarchy. Torch-free and gRPC-free: the engine and the server raise these, the
server maps each kind to a status code (server/errors.py), the command line prints them as one line.

A message names the field, file or id at fault and never a path on the server. Anything that is not
an ArtdetError is a bug: the server answers INTERNAL and logs it with a request id.
"""

from __future__ import annotations

import re
from typing import Any

# an absolute path of two or more parts, as the OS or a library may put into a message
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\"/:,()\[\]]+/)+([^\s'\"/:,()\[\]]*)")


def show(value: Any, limit: int = 80) -> str:
    """A client's value for a message: its repr, shortened; never fails (deep nesting, huge integers)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # ints over the digit limit, nesting past the recursion limit
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def redact_paths(message: str) -> str:
    """Keep the last part of each absolute path (a file's own name), drop the folders it lives in."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "<path>", message)


class ArtdetError(Exception):
    """Something the user can act on; the message says what and where."""


class InvalidArgument(ArtdetError, ValueError):
    """The caller's input is wrong (a field, a file, an image)."""


class NotFound(ArtdetError, LookupError):
    """A named thing (dataset, job, model, file) does not exist."""


class FailedPrecondition(ArtdetError):
    """The request is well formed but the current state does not allow it."""


class PermissionDenied(ArtdetError):
    """The caller is known but its role does not allow this."""


class ResourceExhausted(ArtdetError):
    """A limit was reached: a size, a count, concurrency, or free disk space."""


class DiskFull(ResourceExhausted):
    """No room left where the service keeps its data."""


class Cancelled(ArtdetError):
    """The caller went away or asked to stop."""


class DeadlineExceeded(ArtdetError):
    """The caller's deadline passed before the work could be done."""


class Unavailable(ArtdetError):
    """A dependency (weights, a model file) cannot be had right now."""


class DataCorrupted(ArtdetError):
    """Something the service stored earlier cannot be read back (a damaged file on its side)."""
