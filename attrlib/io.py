"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every result, table, checkpoint and figure of the study goes through these helpers: they write a temporary
file in the destination folder, flush and fsync it, then `os.replace` it over the target (atomic on POSIX
and Windows when both are on one filesystem).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import torch
from filelock import FileLock, Timeout

from .errors import WriteError


_TEMP_SUFFIX = ".tmp"


CACHE_ENV = "ATTRLIB_CACHE_DIR"  # caches shared between processes (calibrations, file digests); a speed-up only


def cache_root() -> Path:
    """The folder of attrlib's caches: `$ATTRLIB_CACHE_DIR`, else `~/.cache/attrlib`. Deleting it only costs time.
    Raises RuntimeError (from `Path.home`) where there is no home directory: callers then go without."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "attrlib")


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


# mkstemp creates its file readable by the owner only; a result takes the mode any new file would (0666 & ~umask),
# so that figures, tables and the report can be shared as usual
_FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; on success it replaces `path`, on error it is removed.

    A failed write (a full disk, a quota, a kill) leaves `path` as it was; an OSError becomes a `WriteError`
    that names the file and says what to do.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TEMP_SUFFIX, dir=path.parent)
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise WriteError(err.errno, _write_message(path, err)) from err
        raise


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, on_wait: Any = None, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on the file `path` (created if missing) while the block runs; the block
    receives True. With blocking=False and the lock held elsewhere, the block receives False at once and
    runs without the lock (the caller skips its work and comes back later).

    Two processes that train the same run (two notebooks of a parallel study both needing the baseline) take
    turns: the second waits, then finds the run done and reuses it. The lock is `filelock`'s (fcntl on POSIX,
    msvcrt on Windows) and dies with its process, so a killed trainer never leaves it held.
    on_wait: called once (no arguments) when another process holds the lock, before waiting for it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        if not blocking:
            yield False
            return
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield True
    finally:
        lock.release()


def _write_message(path: Path, err: OSError) -> str:
    what = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exceeded",
            errno.EACCES: "permission denied", errno.EROFS: "the file system is read-only"}.get(
                err.errno, f"{type(err).__name__}: {err.strerror or err}")
    return (f"cannot write {path}: {what}. The previous version of the file (if any) is intact and no partial "
            "file was left; free space or fix the folder's permissions, then run the same command again "
            "(finished epochs and runs are kept)")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (".<name>.<random>.tmp") a process killed mid-write left in `folder`."""
    removed = []
    for p in Path(folder).glob(f".*{_TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    return removed


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)
    return Path(path)


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths and tuples reach json.dumps from metrics and configs.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")
