"""What Dask's memory setting costs a training run: the same `attrlib train` run with glibc's own behaviour and with
the MALLOC_TRIM_THRESHOLD_ a Dask nanny gives its workers (`distributed.nanny.pre-spawn-environ`, 65536 by
default), which `attrlib.launch.local_cluster` unsets (`launch.WORKER_CONFIG`).

    python benchmarks/bench_launch_memory.py [--steps 60] [--repeats 2] [--profile claims]

Each run is a fresh `attrlib train --technique baseline` process (one torch thread, a fresh runs folder, the
profile's config on its embedded benchmark, which a first, untimed run makes if missing), the two settings in
alternating order; the child's
own rusage (os.wait4) gives user and system CPU seconds and minor page faults, which other processes on a shared
machine inflate less than wall time. The figure is the ratio of CPU seconds with Dask's setting to without it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _lib import ROOT, emit


def dask_trim_threshold() -> str | None:
    import importlib

    import dask

    importlib.import_module("distributed")  # its configuration is loaded on import
    value = dask.config.get("distributed.nanny.pre-spawn-environ").get("MALLOC_TRIM_THRESHOLD_")
    return None if value is None else str(value)


def one_run(profile: str, steps: int, trim: str | None, runs: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    env["OMP_NUM_THREADS"] = "1"
    if trim is not None:
        env["MALLOC_TRIM_THRESHOLD_"] = trim
    command = [sys.executable, "-m", "attrlib", "train", "--technique", "baseline", "--profile", profile,
               "--steps", str(steps), "--runs", str(runs)]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty child cannot block on a full pipe
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{err.read().decode(errors='replace')[-2000:]}")
    return dict(wall=time.perf_counter() - start, user=usage.ru_utime, sys=usage.ru_stime, minflt=usage.ru_minflt)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60, help="optimiser steps per run (default 60)")
    p.add_argument("--repeats", type=int, default=2, help="runs per setting, in alternating order (default 2; the "
                   "figures are medians: with 2, means)")
    p.add_argument("--profile", default="claims", help="the profile whose config the runs take (default claims)")
    args = p.parse_args()
    trim = dask_trim_threshold() or "65536"
    settings = {"glibc": None, f"MALLOC_TRIM_THRESHOLD_={trim} (Dask's nanny)": trim}
    out: dict[str, list[dict]] = {name: [] for name in settings}
    with tempfile.TemporaryDirectory() as tmp:
        one_run(args.profile, args.steps, None, Path(tmp) / "warm_up")  # the benchmark made if missing, caches warm
        for i in range(args.repeats):
            for name, value in (settings.items() if i % 2 == 0 else reversed(settings.items())):  # order alternates
                runs = Path(tmp) / f"runs_{i}_{'dask' if value else 'glibc'}"
                out[name].append(one_run(args.profile, args.steps, value, runs))
    med = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for name, rows in out.items()}
    for name, m in med.items():
        emit("attrlib train, one thread", setting=name, steps=args.steps, profile=args.profile, runs=args.repeats,
             user_s=round(m["user"], 2), sys_s=round(m["sys"], 2), cpu_s=round(m["user"] + m["sys"], 2),
             minor_faults=int(m["minflt"]), wall_s=round(m["wall"], 1))
    glibc, dask_ = med["glibc"], next(m for n, m in med.items() if n != "glibc")
    emit("CPU with Dask's trim threshold / without", ratio=round((dask_["user"] + dask_["sys"])
                                                              / (glibc["user"] + glibc["sys"]), 3),
         system_ratio=round(dask_["sys"] / max(glibc["sys"], 1e-9), 2), target="launch's workers run without it")


if __name__ == "__main__":
    main()
