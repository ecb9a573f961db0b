"""The one error hierarchy. Torch-free and gRPC-free: the engine and the server raise these, the
server maps each kind to a status code (server/errors.py), the command line prints them as one line.

A message names the field, file or id at fault and never a path on the server. Anything that is not
an ArtdetError is a bug: the server answers INTERNAL and logs it with a request id.
"""

from __future__ import annotations


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
