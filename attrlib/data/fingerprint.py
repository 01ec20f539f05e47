"""A data set's fingerprint: part of a run's identity, so a run is reused only on the data it was trained on.

The path alone is not enough (the benchmark regenerated with other parameters at the same path would reuse
stale runs) and too much (the same data reached by another path would retrain). The embedded benchmark is
identified by its benchmark.json (its images are a pure function of those parameters); any other data by its
manifest (if any) and the name, size and modification time of every image file.
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from .images import is_image_path

BENCHMARK_FILE = "benchmark.json"  # the simulator's parameters in a benchmark folder (it writes and parses the file)


def benchmark_file(root: str | os.PathLike | None) -> Path | None:
    """The simulator's parameter file of the data folder `root`, or None when `root` is not a benchmark folder
    (a user's folder, a manifest). The data layer only hashes it and tests for it; `attrlib.simulator.read_benchmark`
    parses it."""
    if root is None:
        return None
    path = Path(root) / BENCHMARK_FILE
    return path if path.is_file() else None


def data_fingerprint(data: str | os.PathLike) -> str:
    path = Path(data).expanduser()
    try:
        path = path.resolve(strict=True)
        stamp = path.stat().st_mtime_ns
    except OSError:
        return f"missing:{os.fspath(data)}"
    return _fingerprint(str(path), stamp)


@functools.lru_cache(maxsize=64)
def _fingerprint(path: str, stamp: int) -> str:
    root = Path(path)
    h = hashlib.sha1()
    if root.is_file():                       # a manifest CSV given directly
        h.update(root.read_bytes())
        root = root.parent
    elif benchmark_file(root) is not None:
        h.update(benchmark_file(root).read_bytes())
        return "benchmark:" + h.hexdigest()[:16]
    elif (root / "manifest.csv").is_file():
        h.update((root / "manifest.csv").read_bytes())
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(("_", ".")))
        for name in sorted(filenames):
            if is_image_path(name):
                full = os.path.join(dirpath, name)
                try:
                    st = os.stat(full)
                except OSError:
                    continue
                h.update(f"{os.path.relpath(full, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return "files:" + h.hexdigest()[:16]
