"""The thorough profile on the Dask launcher: a fixed subset of its runs timed in-process and on a 2-worker
LocalCluster, side by side, and the whole profile's wall time extrapolated from them (an estimate, labelled so).

    python benchmarks/bench_launch.py [--jobs 4] [--steps 78] [--workers 2] [--local-threads 0]

What runs: the first `--jobs` of (baseline, weighted_sampling, group_dro, adversarial_debiasing, gradient_reversal,
blind_head) on the thorough profile's first rotation, seed 0, draw 0 (its defaults), each cut to `--steps`
optimiser steps (78: one epoch of the embedded benchmark, scored once, as each of thorough's 6 epochs is scored at
most once). First in this process one after another with `--local-threads` torch threads (0: every core), then
as tasks of `attrlib.launch` on a LocalCluster of `--workers` processes of one thread each (into another runs
folder, both cold). The cluster's start (processes up, torch and attrlib imported in each) is timed apart.

The whole profile: its runs and optimiser steps are counted by `attrlib.study.jobs.study_jobs("thorough")`
(`attrlib launch --profile thorough --dry-run`; it makes the benchmark's variants if missing). Its wall time is
an estimate: from the subset, seconds per optimiser step (the runs' own train_seconds over their steps) and
seconds per run besides its steps (wall time x workers - train_seconds, per run: data, scoring, predictions),
then runs x the second + steps x the first, divided by the workers, plus the cluster's start. A 468-step run
is scored 5 times where a short one is scored once: that part is under-counted.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from _lib import Timer, emit

TECHNIQUES = ("baseline", "weighted_sampling", "group_dro", "adversarial_debiasing", "gradient_reversal", "blind_head")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=4, help="runs of the subset (default 4)")
    p.add_argument("--steps", type=int, default=78, help="optimiser steps of each (default 78: one epoch)")
    p.add_argument("--workers", type=int, default=2, help="worker processes of the LocalCluster (default 2)")
    p.add_argument("--local-threads", type=int, default=0, help="torch threads in-process (default 0: every core)")
    p.add_argument("--skip-total", action="store_true",
                   help="measure the subset only; do not count the whole profile (study_jobs makes the benchmark's "
                        "variants when missing: minutes the first time)")
    p.add_argument("--totals", default="", metavar="RUNS,STEPS",
                   help="the profile's runs and optimiser steps as `attrlib launch --profile thorough --dry-run` "
                        "prints them (default: counted here)")
    args = p.parse_args()
    import torch
    from dask.distributed import Client

    from attrlib import launch, sweep
    from attrlib.study import resolve_data
    from attrlib.study.jobs import study_jobs
    from attrlib.study.session import resolve_rotations

    data = resolve_data("thorough", progress=False)
    rotation = resolve_rotations("thorough", data, "")[0]
    scratch = Path(tempfile.mkdtemp(prefix="attrlib-launch-"))
    try:
        plan = sweep.plan(TECHNIQUES[:args.jobs], "thorough", seeds=(0,), draws=1, rotations=[rotation],
                          data=str(data), runs=str(scratch / "local"), device="cpu")
        configs = [arm.runs(0)[0].replace(steps=args.steps) for arm in plan]
        subset_steps = sum(launch.run_steps(c) for c in configs)

        threads = args.local_threads or os.cpu_count() or 1
        torch.set_num_threads(threads)
        with Timer() as local:
            for config in configs:
                sweep.train(config, progress=False)

        remote = [c.replace(runs=str(scratch / "cluster")) for c in configs]
        with Timer() as start:
            cluster = launch.local_cluster(args.workers, 1)  # the launcher's own cluster
            client = Client(cluster)
            client.run(_warm)  # torch and attrlib imported in every worker, as the first task would
        try:
            with Timer() as run:
                launch.launch(remote, scheduler=cluster.scheduler_address, threads_per_worker=1, progress=False)
        finally:
            client.close()
            cluster.close()
        measured = {name: [json.loads(p.read_text()) for p in (scratch / folder).glob("*/*/metrics.json")]
                    for name, folder in (("in_process", "local"), ("cluster", "cluster"))}
        same = _finished(scratch / "local") == _finished(scratch / "cluster")
        same_predictions = same and all(filecmp.cmp(scratch / "local" / r / "predictions.csv",
                                                    scratch / "cluster" / r / "predictions.csv", shallow=False)
                                        for r in _finished(scratch / "local"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    n = len(configs)
    fit = {}
    for name, wall, workers in (("in_process", local.seconds, 1), ("cluster", run.seconds, args.workers)):
        trained = sum(m["train_seconds"] for m in measured[name])
        # the optimiser steps' own seconds (metrics.json, train_seconds) and, the rest of each run's wall time
        # (data, scoring, predictions, files), per run
        fit[name] = dict(seconds_per_step=trained / subset_steps, seconds_per_run=(wall * workers - trained) / n)
    emit("subset of thorough's runs: in-process vs a Dask LocalCluster (measured side by side)",
         runs=n, techniques=[c.technique for c in configs], steps_each=args.steps,
         in_process_threads=threads, in_process_seconds=round(local.seconds, 1),
         cluster_workers=args.workers, cluster_start_seconds=round(start.seconds, 1),
         cluster_run_seconds=round(run.seconds, 1), speedup_excluding_start=round(local.seconds / run.seconds, 2),
         fit={k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in fit.items()},
         same_run_ids=same, same_predictions_bytes=same_predictions,
         same_predictions_note="byte-identical only at the same torch threads (tests/test_launch.py: 1 and 1); "
                               "another thread count sums floats in another order",
         load_average_1min=round(os.getloadavg()[0], 1))
    if args.totals:
        total_runs, total_steps = (int(x) for x in args.totals.split(","))
    elif args.skip_total:
        return
    else:
        with Timer() as t:
            arms = study_jobs("thorough")
        total_runs, total_steps = launch.count(arms)
        emit("thorough profile: what it trains (attrlib launch --profile thorough --dry-run)", jobs=len(arms),
             runs=total_runs, optimiser_steps=total_steps, enumeration_seconds=round(t.seconds, 1))

    def hours(name: str, workers: int) -> float:
        f = fit[name]
        return (total_runs * f["seconds_per_run"] + total_steps * f["seconds_per_step"]) / workers / 3600

    emit("thorough profile wall time on this machine (ESTIMATE from the subset, not a run)",
         runs=total_runs, optimiser_steps=total_steps,
         in_process_hours=round(hours("in_process", 1), 1),
         cluster_hours=round(start.seconds / 3600 + hours("cluster", args.workers), 1),
         workers=args.workers, cores=os.cpu_count(),
         how="runs x (measured seconds per run besides its steps) + steps x (measured seconds per step), "
             "divided by the workers (cluster); training only (the notebooks' evaluation besides); float32 as "
             "thorough; the machine is shared: the load average says how busy it was")


def _finished(runs: Path) -> list[str]:
    return sorted(p.parent.relative_to(runs).as_posix() for p in runs.glob("*/*/done"))


def _warm() -> None:
    import attrlib.sweep  # noqa: F401  (torch with it)


if __name__ == "__main__":
    main()
