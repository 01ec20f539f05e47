"""Figure 8: what each profile's study trains, in runs and optimiser steps, and what that costs on this machine.

The runs are the study's own list (`attrlib.study.jobs.study_jobs`, what `attrlib launch --dry-run` counts; plus
notebook 01's strength sweep), each run once; each is priced with its optimiser steps (`attrlib.launch.run_steps`:
a cross-fitted reference's folds included) times the seconds of one step of its technique (`Technique.update`,
the technique's own batch) on its model (backbone, stem, image size, dtype), measured here on random tensors
already in memory, one thread (CPU seconds). That is the training steps only: the data path, scoring, closed-form
fits (`prepare`) and the notebooks' own work add to it. So each profile's baseline is also trained once for real
at the profile's budget on its benchmark (one thread, in a scratch folder: `--no-calibrate` skips it), and its
CPU seconds over its estimate give the factor by which a real run costs more than its steps alone
(`calibrated_train_seconds`: the estimate times that factor; still without the notebooks' own work).

    python benchmarks/bench_profile_cost.py [--profiles quick default claims thorough] [--steps 3] [--no-calibrate]

The `paper` profile (ResNet-50 at 224 px, meant for a GPU) is priced only when named: its steps take seconds
each here. The first call makes each profile's benchmark and its variants when missing (minutes).
"""
from __future__ import annotations

import argparse
import json
import statistics

from _lib import Timer, emit

import pandas as pd
import torch



def benchmark_rotations() -> int:
    """Rotations "all" gives on the embedded benchmark, from the simulator's cell counts (nothing synthesised)."""
    from attrlib.data import eligible_rotations
    from attrlib.simulator import cell_counts

    # one row per image: the rule counts test images per generator (one row per cell gave no rotation at all)
    rows = [dict(split=s, generator=g, subclass=c) for s, gens in cell_counts().items()
            for g, cells in gens.items() for c, n in cells.items() for _ in range(n)]
    return len(eligible_rotations(pd.DataFrame(rows)))


def study_jobs(name: str) -> list[dict]:
    """Every run the study trains for profile `name`, grouped by job: label, runs, optimiser steps and a Config
    to price its step with. The runs are `attrlib.study.jobs.study_jobs`' (what `attrlib launch` trains: every
    notebook's sweeps on every rotation, seed and draw, notebook 11's arms and own-model oracles, the target-data
    references, notebook 12's runs without a generator; a profile naming its notebooks, only theirs), each once;
    steps are `attrlib.launch.run_steps` (a cross-fitted reference trains its folds). Added here: notebook 01's
    strength sweep, which the study trains itself (a few baselines on benchmarks of their own). A job's label is
    its arm's, with the data it trains on when that is not the profile's benchmark (unbiased twin, variants) and
    "without a generator" for notebook 12's runs. Makes the profile's benchmark and its twins when missing."""
    from pathlib import Path

    from attrlib import launch
    from attrlib.config import PROFILES, profile
    from attrlib.study import resolve_data
    from attrlib.study.checks import sweep_points
    from attrlib.study.jobs import study_jobs as launch_jobs

    benchmark = Path(resolve_data(name, progress=False)).name
    jobs: dict[str, dict] = {}
    seen: set[str] = set()
    for arm in launch_jobs(name):
        for config in (*arm.draws, *arm.runs(0)):  # launch.count's runs: the draws, then the first draw's seeds
            key = repr(sorted(config.to_dict().items()))
            if key in seen:
                continue
            seen.add(key)
            data = Path(config.data).name
            label = (arm.label + (f" [{data}]" if data != benchmark else "")
                     + (" (without a generator)" if config.unknown_generators else ""))
            job = jobs.setdefault(label, dict(label=label, data=data, runs=0, steps=0, config=config))
            job["runs"] += 1
            job["steps"] += launch.run_steps(config)
    points = sweep_points(PROFILES[name]["notebook"]["sweep_strengths"])
    if points:  # biased and unbiased at every point but the default strength (the study's own baseline and oracle)
        config = profile(name, technique="baseline")[0]
        n = 2 * (len(points) - 1)
        jobs["strength sweep"] = dict(label="strength sweep", data="sweep", runs=n, steps=n * launch.run_steps(config),
                                      config=config)
    return list(jobs.values())


def run_cost(config, steps: int, cache: dict) -> dict:
    """A run's budget (`Technique.steps`, at its `batch_size`) and the median CPU seconds of one step of it: the
    technique's update on random tensors (its model, batch, image size, dtype), or the baseline's step on the same
    model where the update needs its `prepare` first (`measured` says which). CPU seconds: on a shared machine
    other processes' time slices do not count; on an idle one they equal wall seconds (one thread)."""
    from attrlib import techniques

    generators, subclasses = [f"g{i}" for i in range(6)], [f"s{i}" for i in range(7)]
    technique = techniques.get(config.technique)(config, generators, subclasses).train()
    budget, batch = technique.steps, technique.batch_size
    # the budget is the profile's; a step's seconds depend on the technique and its model only
    params = {k: v for k, v in config.technique_params.items() if k != "steps"}
    key = json.dumps([config.technique, params, config.backbone, config.stem, config.image_size, batch, config.bf16],
                     sort_keys=True)
    if not budget or key in cache:
        return dict(steps_per_run=budget, batch=batch, **(cache[key] if budget else
                                                            dict(seconds_per_step=0.0, measured="no steps")))
    y, sub = torch.randint(0, 6, (batch,)), torch.randint(0, 7, (batch,))
    data = dict(x=torch.rand(batch, 3, config.image_size, config.image_size), generator=y, subclass=sub,
                group=y * 7 + sub, index=torch.arange(batch))
    how = "update"
    try:
        technique.update(data)  # warm-up (oneDNN's kernels, the optimiser's state)
    except Exception:  # noqa: BLE001 an update that needs its prepare (jtt's identification model)
        technique = techniques.get("baseline")(config.replace(technique="baseline", technique_params={}),
                                               generators, subclasses).train()
        technique.update(data)
        how = "baseline step"
    seconds = []
    for _ in range(steps):
        with Timer() as t:
            technique.update(data)
        seconds.append(t.cpu_seconds)
    cache[key] = dict(seconds_per_step=statistics.median(seconds), measured=how)
    return dict(steps_per_run=budget, batch=batch, **cache[key])


def calibrate(name: str, seconds_per_step: float, cache: dict) -> dict:
    """One real run of profile `name`'s baseline at its budget on its benchmark (a scratch folder, one thread): its
    CPU seconds (data, training, scoring, predictions) against steps x `seconds_per_step`. Runs of the same Config
    are measured once (claims and default share theirs)."""
    import shutil
    import tempfile

    from attrlib import launch, sweep
    from attrlib.config import profile
    from attrlib.study import resolve_data

    config = profile(name, technique="baseline", data=str(resolve_data(name, progress=False)), device="cpu")[0]
    key = repr(sorted(config.replace(runs="").to_dict().items()))
    if key not in cache:
        scratch = tempfile.mkdtemp(prefix="attrlib-calibrate-")
        try:
            with Timer() as t:
                sweep.train(config.replace(runs=scratch), progress=False)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        steps = launch.run_steps(config)
        cache[key] = dict(steps=steps, run_cpu_seconds=round(t.cpu_seconds, 1), run_wall_seconds=round(t.seconds, 1),
                          estimate_seconds=round(steps * seconds_per_step, 1),
                          factor=round(t.cpu_seconds / max(steps * seconds_per_step, 1e-9), 2))
    return cache[key]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profiles", nargs="+", default=["quick", "default", "claims", "thorough"],
                   help="profiles to price (default: quick default claims thorough; paper too when named)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per technique and model; the median (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   help="skip the one real baseline run per profile (about a minute each at the default budget)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cache: dict = {}
    calibrations: dict = {}
    totals = []
    for name in args.profiles:
        rows = []
        for job in study_jobs(name):
            cost = run_cost(job["config"], args.steps, cache)
            steps = job["steps"] if cost["steps_per_run"] else 0  # no steps: a closed-form fit (DFR, residual stats)
            rows.append(dict(job=job["label"], data=job["data"], runs=job["runs"], **cost,
                             steps=steps, seconds=round(steps * cost["seconds_per_step"], 1)))
            rows[-1]["seconds_per_step"] = round(cost["seconds_per_step"], 4)
        table = pd.DataFrame(rows).sort_values("seconds", ascending=False)
        total = dict(profile=name, runs=int(table["runs"].sum()), steps=int(table["steps"].sum()),
                     estimated_train_seconds=round(float(table["seconds"].sum()), 1))
        if args.calibrate:
            from attrlib.config import profile

            baseline = run_cost(profile(name, technique="baseline")[0], args.steps, cache)
            calibration = calibrate(name, baseline["seconds_per_step"], calibrations)
            total.update(calibrated_train_seconds=round(total["estimated_train_seconds"] * calibration["factor"], 1),
                         calibration=calibration)
        seconds = total.get("calibrated_train_seconds", total["estimated_train_seconds"])
        total["hours_on_2_cores"] = round(seconds / 3600 / 2, 2)  # two one-thread runs at a time
        totals.append(total)
        emit("profile_cost", **total, threads=args.threads,
             top_jobs=table.head(5)[["job", "runs", "steps", "seconds"]].to_dict("records"),
             note="estimate: steps x measured seconds per step (random tensors, one thread); calibrated: times one "
                  "real baseline run's CPU seconds over its estimate; notebooks' own work not included")
        print(f"\n{name}: {total['runs']} runs, {total['steps']:,} optimiser steps, "
              f"~{total['estimated_train_seconds']:,.0f} s of training steps (estimate), "
              f"~{seconds:,.0f} s {'calibrated with a real run' if args.calibrate else ''}")
        print(table.to_string(index=False))
    print("\n| profile | runs | optimiser steps | training steps (s, 1 thread) | a real run / its steps | "
          "calibrated (s) | hours on 2 cores |\n|---|---|---|---|---|---|---|")
    for t in totals:
        c = t.get("calibration", {})
        print(f"| {t['profile']} | {t['runs']:,} | {t['steps']:,} | {t['estimated_train_seconds']:,.0f} | "
              f"{c.get('factor', 'n/a')} | {t.get('calibrated_train_seconds', float('nan')):,.0f} | "
              f"{t['hours_on_2_cores']} |")


if __name__ == "__main__":
    main()
