"""Two per-process overheads of a study, each measured side by side in one run:

- a notebook that loads many runs asks for the data's manifest once per run (notebook 08 of the quick study: 16
  times): `data.sources.discover` with its per-process cache against `read_manifest` every time (the code before);
- a parallel study's lane is a fresh interpreter (spawn) that imports the module of the function it runs:
  `attrlib.notebook` (papermill only) against `attrlib.study.runner` (which loads torch through the study package).

    python benchmarks/bench_study_overheads.py [--data data/benchmark-quick] [--reads 16] [--repeats 3]

--data: a folder with a manifest.csv (made with `attrlib synth --profile quick` when it is the default and missing).
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
from pathlib import Path

from _lib import Timer, emit

from attrlib.data import sources


def child_cpu(code: str) -> float:
    """CPU seconds (user + sys) of a fresh interpreter running `code`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/benchmark-quick")
    ap.add_argument("--reads", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    root = Path(args.data)
    if not (root / sources.MANIFEST_NAME).is_file():
        if args.data != "data/benchmark-quick":
            raise SystemExit(f"{root} has no {sources.MANIFEST_NAME}; pass a folder that has one")
        from attrlib.study import resolve_data
        root = resolve_data("quick", "", progress=False)
    manifest = root / sources.MANIFEST_NAME
    rows = len(sources.read_manifest(manifest).frame)
    with Timer() as every:
        for _ in range(args.reads):
            sources.read_manifest(manifest)
    sources._MANIFESTS.clear()
    with Timer() as cached:
        for _ in range(args.reads):
            sources.discover(root)
    emit("manifest reads", rows=rows, reads=args.reads, cpu_s_read_every_time=round(every.cpu_seconds, 2),
         cpu_s_cached=round(cached.cpu_seconds, 2), speedup=round(every.cpu_seconds / cached.cpu_seconds, 1))
    runner = [child_cpu("import pickle; from attrlib.study.runner import run_study") for _ in range(args.repeats)]
    lane = [child_cpu("import pickle; from attrlib.notebook import execute") for _ in range(args.repeats)]
    emit("lane worker imports", repeats=args.repeats, cpu_s_study_runner=round(min(runner), 2),
         cpu_s_notebook_module=round(min(lane), 2), saved_per_lane_cpu_s=round(min(runner) - min(lane), 2))


if __name__ == "__main__":
    main()
