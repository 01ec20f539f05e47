"""Figure 8: what each profile's study trains, in runs and optimiser steps, and what that costs on this machine.

Counts the runs the study's notebooks train for a profile, from its rotations, seeds, hyper-parameter draws and
notebook knobs (`attrlib.config.PROFILES`), and prices each with its optimiser steps times the seconds of one
step of its technique (`Technique.update`, the technique's own batch and budget) on its model (backbone, stem,
image size, dtype), measured here on random tensors already in memory, one thread (CPU seconds). An estimate, labelled so:
the data path, scoring, closed-form fits (`prepare`) and the notebooks' own work add to it; runs shared by
notebooks are counted once. The job list mirrors notebooks 01-11 (kept in step with them by hand, as
bench_thorough_cost.py's count is): per rotation and job, `draws + seeds - 1` runs when a profile searches
(draws > 1; the draws train seed 0), else one per seed.

    python benchmarks/bench_profile_cost.py [--profiles quick default claims thorough] [--steps 3]

The `paper` profile (ResNet-50 at 224 px, meant for a GPU) is priced only when named: its steps take seconds
each here.
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict

from _lib import Timer, emit

import pandas as pd
import torch

from attrlib.study.closing import arm_configs, chosen_arms, model_arms, model_oracle_configs


def benchmark_rotations() -> int:
    """Rotations "all" gives on the embedded benchmark, from the simulator's cell counts (nothing synthesised)."""
    from attrlib.data import eligible_rotations
    from attrlib.simulator import cell_counts

    # one row per image: the rule counts test images per generator (one row per cell gave no rotation at all)
    rows = [dict(split=s, generator=g, subclass=c) for s, gens in cell_counts().items()
            for g, cells in gens.items() for c, n in cells.items() for _ in range(n)]
    return len(eligible_rotations(pd.DataFrame(rows)))


def study_jobs(name: str) -> list[dict]:
    """Every distinct job the study trains for profile `name`: label, Config overrides, data (a tag), runs."""
    from attrlib import techniques
    from attrlib.config import PROFILES, profile
    from attrlib.study.checks import sweep_points

    p, knobs = PROFILES[name], PROFILES[name]["notebook"]
    spec = p["rotations"]
    rotations = {"crossed": 2, "all": benchmark_rotations()}.get(spec) if isinstance(spec, str) else len(spec)
    seeds, draws = len(p["seeds"]), int(p.get("draws", 1))
    per_rotation = draws + seeds - 1 if draws > 1 else seeds
    half = profile(name)[0].image_size // 2
    jobs: dict[str, dict] = {}

    def add(label: str, overrides: dict, data: str, n_rotations: int, runs_each: int = per_rotation) -> None:
        key = json.dumps([overrides, data], sort_keys=True)  # one run folder however many notebooks ask for it
        if key not in jobs or jobs[key]["runs"] < n_rotations * runs_each:
            jobs[key] = dict(label=label, overrides=overrides, data=data, runs=n_rotations * runs_each)

    only = tuple(p.get("notebooks", ()))  # the notebooks the profile's study runs (claims: 11 only)
    if not only or set(only) - {"11"}:
        for t in techniques.available():  # notebooks 02-10
            add(t, {"technique": t}, "benchmark", rotations)
        add("matched_oracle", {"technique": "baseline"}, "matched", rotations)  # notebook 02
        ablation = min(rotations, knobs["ablation_rotations"] or rotations)  # notebook 07's front-end ablation
        for label, overrides in {"baseline_srm": {"stem": "srm"}, "baseline_npr": {"stem": "npr"},
                                 f"crop_{half}px": {"image_size": half},
                                 f"resize_{half}px": {"image_size": half, "input_policy": "resize"}}.items():
            add(label, {"technique": "baseline", **overrides}, "benchmark", ablation)
    add("oracle", {"technique": "baseline"}, "unbiased", rotations)  # notebooks 02, 10, 11
    configs = arm_configs(*chosen_arms(knobs.get("closing_arms", ())))  # notebook 11's arms (the same run once)
    for label, overrides in configs.items():
        add(label, overrides, "benchmark", rotations)
    # notebook 11: every arm's own model by ERM on the unbiased twin (the compact one is the oracle, counted once)
    for model, overrides in model_oracle_configs(model_arms(configs), configs, "unbiased").items():
        add(f"oracle of {model}", {k: v for k, v in overrides.items() if k != "data"}, "unbiased", rotations)
    if knobs["second_config"]:  # notebook 10: every technique and the oracle on a second configuration
        for t in techniques.available():
            add(f"{t} (second config)", {"technique": t}, "second", rotations)
        add("oracle (second config)", {"technique": "baseline"}, "second-unbiased", rotations)
    if knobs["closing_variants"]:  # notebook 11: baseline, the two checked arms, the selected arm (+1), the oracle
        variant_rotations = min(rotations, knobs["closing_variant_rotations"] or rotations)
        for label, overrides in {"baseline": {"technique": "baseline"},
                                 "local_srm_rgb": configs["local_srm_rgb"],
                                 "local_srm_rgb_mix": configs["local_srm_rgb_mix"],
                                 "selected arm": configs["local_srm_rgb_mix"]}.items():
            add(f"{label} (non-additive)", overrides, f"non-additive {label}", variant_rotations)
            add(f"{label} (realistic)", overrides, f"realistic {label}", 1)
        add("oracle (non-additive)", {"technique": "baseline"}, "non-additive-unbiased", variant_rotations)
    # notebook 01's strength sweep: biased and unbiased at every point but the default strength (those are the
    # study's own baseline and oracle, reused); one seed, no search
    points = sweep_points(knobs["sweep_strengths"])
    if points:
        add("strength sweep", {"technique": "baseline"}, "sweep", 2 * (len(points) - 1), runs_each=1)
    return [{**job, "config": profile(name, **job["overrides"])[0]} for job in jobs.values()]


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profiles", nargs="+", default=["quick", "default", "claims", "thorough"],
                   help="profiles to price (default: quick default claims thorough; paper too when named)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per technique and model; the median (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cache: dict = {}
    totals = []
    for name in args.profiles:
        rows = []
        for job in study_jobs(name):
            cost = run_cost(job["config"], args.steps, cache)
            steps = job["runs"] * cost["steps_per_run"]
            rows.append(dict(job=job["label"], data=job["data"], runs=job["runs"], **cost,
                             steps=steps, seconds=round(steps * cost["seconds_per_step"], 1)))
            rows[-1]["seconds_per_step"] = round(cost["seconds_per_step"], 4)
        table = pd.DataFrame(rows).sort_values("seconds", ascending=False)
        by_technique = defaultdict(float)
        for r in rows:
            by_technique[r["job"].split(" (")[0]] += r["seconds"]
        total = dict(profile=name, runs=int(table["runs"].sum()), steps=int(table["steps"].sum()),
                     estimated_train_seconds=round(float(table["seconds"].sum()), 1))
        totals.append(total)
        emit("profile_cost", **total, threads=args.threads,
             top_jobs=table.head(5)[["job", "runs", "steps", "seconds"]].to_dict("records"),
             note="estimate: steps x measured seconds per step (random tensors, one thread); data path, scoring, "
                  "prepare and notebooks not included")
        print(f"\n{name}: {total['runs']} runs, {total['steps']:,} optimiser steps, "
              f"~{total['estimated_train_seconds']:,.0f} s of training (estimate)")
        print(table.to_string(index=False))
    print("\n| profile | runs | optimiser steps | estimated training seconds (1 thread) |\n|---|---|---|---|")
    for t in totals:
        print(f"| {t['profile']} | {t['runs']} | {t['steps']:,} | {t['estimated_train_seconds']:,.0f} |")


if __name__ == "__main__":
    main()
