"""A data set's fingerprint: part of a run's identity, so a run is reused only on the data it was trained on.

The path alone is not enough (the benchmark regenerated with other parameters at the same path would reuse
stale runs) and too much (the same data reached by another path would retrain). The embedded benchmark is
identified by its benchmark.json (its images are a pure function of those parameters); any other data by its
manifest (if any) and the relative path, size and content digest (BLAKE2b) of every image file. Not by
modification times: a copy of a folder (to another disk, back from a GPU machine) gets new ones, and its runs
must still be found.

Reading every byte is paid once per file: the digests are kept in a cache file per data folder under
`$ATTRLIB_CACHE_DIR/digests` (default `~/.cache/attrlib`: `attrlib.io.cache_root`), keyed by a file's path, size,
modification and status-change times and inode, so a rewritten file is read again even when its modification time
is set back (the status-change time cannot be), and a file modified in the last seconds before the listing is never
cached (as git treats "racy" entries). An unwritable or damaged cache only costs speed.

Within one process a folder's fingerprint is kept while none of its folders changes (their modification times:
a file added, removed or renamed); an image rewritten in place during a process is seen by the next one. Each
call otherwise walks the folder (a stat per image: 0.03 s for realdev's 650 files).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from ..io import atomic_write_text, cache_root
from .images import is_image_path

BENCHMARK_FILE = "benchmark.json"  # the simulator's parameters in a benchmark folder (it writes and parses the file)
_CHUNK = 1 << 20
_MEMO: dict[tuple, str] = {}                 # (absolute path, *stamp) -> digest, in this process
_FOLDERS: dict[str, tuple[tuple, str]] = {}  # root -> (its folders' modification times, its fingerprint)
_RACY_NS = 2_000_000_000                     # a file modified this close to its listing is not cached


def benchmark_file(root: str | os.PathLike | None) -> Path | None:
    """The simulator's parameter file of the data folder `root`, or None when `root` is not a benchmark folder
    (a user's folder, a manifest). The data layer only hashes it and tests for it; `attrlib.simulator.read_benchmark`
    parses it."""
    if root is None:
        return None
    path = Path(root) / BENCHMARK_FILE
    return path if path.is_file() else None


def data_fingerprint(data: str | os.PathLike) -> str:
    """The data's identity: `benchmark:<hash of benchmark.json>` for the embedded benchmark, `files:<hash>` for any
    other folder or manifest (its bytes, and every image's relative path, size and content), `missing:<path>` when
    there is none."""
    path = Path(data).expanduser()
    try:
        path = path.resolve(strict=True)
    except OSError:
        return f"missing:{os.fspath(data)}"
    h = hashlib.sha1()
    root = path
    if root.is_file():                       # a manifest CSV given directly
        h.update(root.read_bytes())
        root = root.parent
    elif benchmark_file(root) is not None:
        h.update(benchmark_file(root).read_bytes())
        return "benchmark:" + h.hexdigest()[:16]
    elif (root / "manifest.csv").is_file():
        h.update((root / "manifest.csv").read_bytes())
    folders = _folder_stamps(root)
    key = f"{root}\0{h.hexdigest()}"
    known = _FOLDERS.get(key)
    if known is not None and known[0] == folders:
        return known[1]
    for rel, size, digest in _contents(root):
        h.update(f"{rel}\0{size}\0{digest}\n".encode())
    fingerprint = "files:" + h.hexdigest()[:16]
    _FOLDERS[key] = (folders, fingerprint)
    return fingerprint


def _walk(root: Path):
    """os.walk below root in a fixed order, skipping folders that start with "_" or "." (masks, caches)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(("_", ".")))
        yield dirpath, sorted(filenames)


def _folder_stamps(root: Path) -> tuple:
    """(folder, mtime_ns) of every folder `_walk` visits: changes when a file is added, removed or renamed."""
    out = []
    for dirpath, _ in _walk(root):
        try:
            out.append((dirpath, os.stat(dirpath).st_mtime_ns))
        except OSError:
            out.append((dirpath, -1))
    return tuple(out)


def _listing(root: Path) -> list[tuple[str, int, tuple]]:
    """(relative path, size, stamp) of every image file under root, in a fixed order; stamp = (size, mtime_ns,
    ctime_ns, inode): what a cached digest must match."""
    out = []
    for dirpath, filenames in _walk(root):
        for name in filenames:
            if is_image_path(name):
                full = os.path.join(dirpath, name)
                try:
                    st = os.stat(full)
                except OSError:
                    continue
                out.append((Path(os.path.relpath(full, root)).as_posix(), st.st_size,
                            (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)))
    return out


def file_digest(path: str | os.PathLike) -> str:
    """BLAKE2b (16 bytes) of a file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _cache_path(root: Path) -> Path | None:
    try:
        return cache_root() / "digests" / (hashlib.sha1(os.fspath(root).encode()).hexdigest()[:16] + ".json")
    except RuntimeError:                     # no home directory: no cache
        return None


def _read_cache(path: Path | None) -> dict:
    """The folder's cached entries {relative path: [*stamp, digest]}; {} for a missing, unreadable or damaged file."""
    if path is None:
        return {}
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _write_cache(path: Path | None, entries: dict) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(entries))
    except OSError:                          # WriteError included
        pass                                 # a cache: without it the next call reads the files again


def _contents(root: Path) -> list[tuple[str, int, str]]:
    """(relative path, size, content digest) of every image file under root; digests from this process's memo,
    then the folder's cache file, then the bytes. A file that cannot be read is left out here; reading the data
    names it."""
    listed_at = time.time_ns()
    listing = _listing(root)
    cache_file = _cache_path(root)
    cached: dict | None = None               # read only when this process's memo misses a file
    fresh = {}
    out = []
    for rel, size, stamp in listing:
        key = (os.path.join(os.fspath(root), rel), *stamp)
        digest = _MEMO.get(key)
        if digest is None:
            if cached is None:
                cached = _read_cache(cache_file)
            entry = cached.get(rel)
            if isinstance(entry, list) and entry[:-1] == list(stamp) and isinstance(entry[-1], str):
                digest = entry[-1]
            else:
                try:
                    digest = file_digest(key[0])
                except OSError:
                    continue                 # vanished or unreadable since the listing: as if absent
            if stamp[1] < listed_at - _RACY_NS:
                _MEMO[key] = digest
        if stamp[1] < listed_at - _RACY_NS:
            fresh[rel] = [*stamp, digest]
        out.append((rel, size, digest))
    if cached is not None and cached != fresh:
        _write_cache(cache_file, fresh)
    return out
