"""Atomic, durable file writes and renames: readers see the old file or the new one, never half of one,
and a rename survives a crash (its folder is fsynced). Published files get ordinary permissions (0666 / 0777
less the umask), not tempfile's private 0600 / 0700, so another user (a read-only replica) can read them.
Torch-free."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from artdet.detector.errors import DiskFull

_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def current_umask() -> int:
    """The process's umask, read without changing it (os.umask would, briefly, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    return 0o777 & ~current_umask()


def publish_permissions(root: Path) -> None:
    """Give a staged tree (made by tempfile.mkdtemp / mkstemp: 0700 / 0600) the modes the umask allows."""
    files, dirs = file_mode(), dir_mode()
    os.chmod(root, dirs)
    for folder, subdirs, names in os.walk(root):
        for name in subdirs:
            os.chmod(os.path.join(folder, name), dirs)
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, files)


def fsync_dir(path: Path) -> None:
    """Make the entries of a folder (a rename into it, a new file) durable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a directory; nothing more can be done there
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file's contents to the disk (a copy is not durable until then)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_rename(source: Path, target: Path) -> None:
    """rename(2), then fsync the folders on both sides so the move survives a crash."""
    os.rename(source, target)
    fsync_dir(Path(target).parent)
    if Path(source).parent != Path(target).parent:
        fsync_dir(Path(source).parent)


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether `exc`, or an error it was raised from or during (torch wraps write errors), is a full disk."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull) or (isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS):
            return True
        if type(exc).__name__ == "OperationalError" and "disk is full" in str(exc):  # sqlite3's SQLITE_FULL
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_mb(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free >> 20
    except OSError:
        return 0


def atomic_write_bytes(path: Path, write, what: str = "") -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file.

    A full disk raises DiskFull("disk full while writing <what>"), naming no folder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
        fsync_dir(path.parent)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if is_disk_full(exc) and not isinstance(exc, DiskFull):
            raise DiskFull(f"disk full while writing {what or path.name} ({free_mb(path.parent)} MB free)") from exc
        raise


def save_json(obj: Any, path: Path, what: str = "") -> None:
    text = json.dumps(obj, indent=2).encode()
    atomic_write_bytes(path, lambda handle: handle.write(text), what)
