"""Figure 3: wall time of the whole study (`attrlib study`) per profile, on this machine.

Runs the quick profile's study end to end (every notebook, papermill) into a temporary folder (runs,
figures, results, executed notebooks), so nothing cached is reused; the embedded benchmark is made
first and timed apart (it is cached across studies). The default profile takes long: it runs only with
ATTRLIB_BENCH_DEFAULT=1; otherwise the wall time the last cold default `make study` recorded here is
reported (runs/notebooks/study_timing.json, written by attrlib.study, used only when that study found no
finished run to reuse), or, without one, an estimate: the quick study's notebook overhead plus a measured
default-profile baseline run times the number of runs the default study trains (one notebook at a time;
labelled an estimate, not a measurement). --compare-kernels runs the quick study a second time with a kernel per
notebook (`attrlib study --fresh-kernels`) and reports both, one after the other: wall seconds and the CPU
seconds of the study and every process it waited for (lanes, kernels).
    python benchmarks/bench_study.py            ATTRLIB_BENCH_DEFAULT=1 python benchmarks/bench_study.py
    python benchmarks/bench_study.py --quick-only --compare-kernels
"""
from __future__ import annotations

import json
import os
import resource
import tempfile
from pathlib import Path

from _lib import Timer, emit


def _cpu() -> float:
    """CPU seconds of this process and of every child it has waited for (a study's lanes, and their kernels)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def study(profile: str, fresh_kernels: bool = False) -> dict:
    from attrlib.study import resolve_data, run_study

    with Timer() as t_data:  # and its twins, so that no timed study makes them (the second would find them made)
        for variant in ("biased", "unbiased", "matched"):
            resolve_data(profile, progress=False, variant=variant)
    with tempfile.TemporaryDirectory(prefix=f"attrlib-study-{profile}-") as tmp:
        tmp = Path(tmp)
        cpu = _cpu()
        with Timer() as t:
            run_study(profile=profile, runs=str(tmp / "runs"), figures=str(tmp / "figures"),
                      results=str(tmp / "results"), out=str(tmp / "notebooks"), device="cpu", progress=False,
                      fresh_kernels=fresh_kernels)
        cpu = _cpu() - cpu
        train_seconds, n_runs = 0.0, 0
        for m in (tmp / "runs").rglob("metrics.json"):
            train_seconds += json.loads(m.read_text()).get("train_seconds", 0.0)
            n_runs += 1
    return dict(seconds=t.seconds, cpu_seconds=cpu, data_seconds=t_data.seconds, runs=n_runs,
                train_seconds=train_seconds)


def default_run_seconds() -> float:
    """Wall time of one default-profile baseline run (train + evaluate), measured."""
    from attrlib import sweep
    from attrlib.config import profile
    from attrlib.study import resolve_data

    config, _ = profile("default", device="cpu", technique="baseline")
    config = config.replace(data=str(resolve_data("default", progress=False)))
    with tempfile.TemporaryDirectory(prefix="attrlib-run-") as runs, Timer() as t:
        sweep.train(config.replace(runs=runs), progress=False)
    return t.seconds


def main() -> None:
    import argparse

    from attrlib.config import PROFILES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick-only", action="store_true", help="measure the quick study only (no default estimate)")
    p.add_argument("--compare-kernels", action="store_true",
                   help="the quick study again with a kernel per notebook (--fresh-kernels), after the kept-kernel one")
    p.add_argument("--record", default="runs/notebooks/study_timing.json",
                   help="the timing a default `make study` left; reported instead of an estimate when present")
    args = p.parse_args()
    q = study("quick")
    emit("study_wall_time", profile="quick", seconds=round(q["seconds"], 1), minutes=round(q["seconds"] / 60, 2),
         cpu_seconds=round(q["cpu_seconds"], 1), benchmark_synthesis_seconds=round(q["data_seconds"], 1),
         runs_trained=q["runs"], train_seconds=round(q["train_seconds"], 1), kernels="one per lane, reset between "
         "notebooks", measured=True, target="< 3 min", met=q["seconds"] < 180)
    if args.compare_kernels:
        f = study("quick", fresh_kernels=True)
        emit("study_wall_time", profile="quick", seconds=round(f["seconds"], 1), cpu_seconds=round(f["cpu_seconds"], 1),
             runs_trained=f["runs"], kernels="one per notebook (--fresh-kernels)", measured=True,
             kept_over_fresh_wall=round(q["seconds"] / f["seconds"], 3),
             kept_over_fresh_cpu=round(q["cpu_seconds"] / f["cpu_seconds"], 3))
    if os.environ.get("ATTRLIB_BENCH_DEFAULT") == "1":
        d = study("default")
        emit("study_wall_time", profile="default", seconds=round(d["seconds"], 1), minutes=round(d["seconds"] / 60, 2),
             runs_trained=d["runs"], train_seconds=round(d["train_seconds"], 1), measured=True, target="< 15 min",
             met=d["seconds"] < 900)
        return
    if args.quick_only:
        return
    record = Path(args.record)
    from attrlib.study import STUDY_BENCHMARKS

    r = json.loads(record.read_text()) if record.is_file() else {}  # what `make study` measured here last
    if (r.get("profile") == "default" and not r.get("only") and r.get("runs_reused_or_before") == 0
            and Path(r.get("data", "")) == Path(STUDY_BENCHMARKS["default"]["out"])):  # the whole study, embedded data
        # what bounds it: the notebooks' time summed over the lanes, and the share of it spent in training epochs
        lane = sum(r["notebooks"].values())
        epochs = sum(json.loads(m.read_text()).get("train_seconds", 0.0)
                     for m in Path(r.get("runs", "runs")).glob("*/*/metrics.json"))
        emit("study_wall_time", profile="default", seconds=r["seconds"], minutes=round(r["seconds"] / 60, 2),
             notebook_seconds_summed=round(lane, 1), best_packing_minutes=round(lane / r["jobs"] / 60, 1),
             training_epoch_seconds_summed=round(epochs, 1), training_epoch_share=round(epochs / max(lane, 1e-9), 3),
             measured=True, how=f"the last `attrlib study --profile default` on this machine ({r['finished']}, "
             f"{r['jobs']} notebooks at a time, {r['threads']} thread(s) each, {r['runs_trained']} runs trained, "
             f"none reused), read from {record}",
             notebooks=r["notebooks"], target="< 15 min", met=r["seconds"] < 900)
        return
    per_run = default_run_seconds()
    seeds = len(PROFILES["default"]["seeds"]) / len(PROFILES["quick"]["seeds"])
    runs = round(q["runs"] * seeds)
    overhead = q["seconds"] - q["train_seconds"]  # notebooks, evaluation, figures: a floor, it grows with data
    estimate = overhead + runs * per_run
    emit("study_wall_time", profile="default", seconds=round(estimate, 1), minutes=round(estimate / 60, 2),
         measured=False, how=f"estimate: {runs} runs (quick's {q['runs']} x {seeds:g} seeds) x {per_run:.1f} s "
         f"(one measured default baseline run; fine tuning and test-time techniques differ) + {overhead:.0f} s "
         "notebook overhead of the quick study; set ATTRLIB_BENCH_DEFAULT=1 to measure",
         target="< 15 min", met=estimate < 900)


if __name__ == "__main__":
    main()
