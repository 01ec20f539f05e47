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
    elif (root / "benchmark.json").is_file():
        h.update((root / "benchmark.json").read_bytes())
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
