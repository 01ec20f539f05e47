"""Shared helpers of the benchmarks: one JSON line per figure, timers, peak memory.

Every benchmark measures what it compares side by side in one process run (the machine is shared and
noisy: ratios measured together are meaningful, absolute numbers less so).
"""
from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def emit(figure: str, **fields) -> None:
    """One JSON line: the figure's name, its numbers, the target and whether it is met."""
    print(json.dumps({"figure": figure, **fields, "host": f"{platform.machine()} {os.cpu_count()} cpu"},
                     sort_keys=False, default=str), flush=True)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer:
    """Wall seconds (`seconds`) and this process's CPU seconds (`cpu_seconds`: what other processes on a shared
    machine do not inflate, as long as the timed work keeps its threads busy)."""

    def __enter__(self):
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start
