"""Atomic file writes, the one way Synesthesia and its plugins write files.

A reader (or a crash) sees the old file or the new one, never a torn one: the data goes to a temporary
file in the same folder, is flushed to disk, then renamed over the target with ``os.replace``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _umask_permissions(path: str) -> None:
    # mkstemp files are private (0600); give them what a plain open() would, since artworks are shared.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` for a library that writes by file name (savefig, mido, PIL,
    safetensors, fluidsynth); it replaces ``path`` when the block succeeds and is removed otherwise."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        _umask_permissions(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """``open()`` for writing, atomically: the file appears complete when the block ends, or not at all."""
    if mode not in {"w", "wb"}:
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp:
        binary = "b" in mode
        with open(tmp, mode, encoding=None if binary else encoding, newline=None if binary else "\n") as handle:
            yield handle


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to ``path`` atomically; returns the path."""
    with atomic_open(path, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def read_json(path: str | os.PathLike, error: Callable[[str], Exception], fix: str, what: str = "JSON") -> Any:
    """The JSON in a UTF-8 file, or ``error`` raised with one line that says what to do:
    ``PATH: unreadable JSON (why); FIX`` for a file that is missing, unreadable, not UTF-8 or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise error(f"{path}: unreadable {what} ({exc}); {fix}") from None


def write_json_atomic(path: str | os.PathLike, data: Any, *, indent: int | None = 2, **dumps_options: Any) -> Path:
    """Write ``data`` as UTF-8 JSON (non-ASCII kept readable) atomically; returns the path."""
    text = json.dumps(data, ensure_ascii=False, indent=indent, **dumps_options)
    return write_atomic(path, text + "\n")


# The OS errors that mean "this disk or folder cannot be written here" (full, read-only, forbidden), with how
# each is said: callers turn them into one line that says nothing was lost, never a traceback.
DISK_ERRORS = {errno.EACCES: "permission denied", errno.EPERM: "not permitted", errno.EROFS: "read-only file system",
               errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (this one does): leftovers of dead processes may be cleaned."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks (manifests, checkpoints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (renames into it) to disk, where the platform allows."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def swap_into_place(staging: str | os.PathLike, target: str | os.PathLike, *, aside: str | os.PathLike | None = None,
                    keep_previous: bool = False) -> Path:
    """Replace the folder ``target`` by the complete folder ``staging`` with renames, never leaving it half-written.

    A previous ``target`` is first renamed to ``aside`` (default ``.NAME.old-PID-NS`` beside it), then
    ``staging`` takes its name; the previous one is deleted unless ``keep_previous``. A crash between the two
    renames leaves the previous folder whole at ``aside`` for the caller's recovery. Returns ``target``."""
    staging, target = Path(staging), Path(target)
    if target.exists():
        old = Path(aside) if aside is not None else target.parent / f".{target.name}.old-{os.getpid()}-{time.time_ns()}"
        old.parent.mkdir(parents=True, exist_ok=True)
        os.replace(target, old)
        os.replace(staging, target)
        fsync_dir(target.parent)
        if not keep_previous:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)
        fsync_dir(target.parent)
    return target
