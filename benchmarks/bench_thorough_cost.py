"""What the `thorough` profile costs, from the measured runs of a finished default study (an estimate, labelled so).

The thorough profile (every rotation, five seeds, eight hyper-parameter draws per job and rotation, float32,
the second benchmark configuration) is too long to time on a 2-core CPU; this counts the runs it trains and
prices each with the training seconds the same job took in a finished `default` study (its metrics.json,
train_seconds, bf16), scaled to thorough's step budget and by the bf16 speed-up measured by bench_bf16.py
(thorough trains in float32).

    python benchmarks/bench_thorough_cost.py [RUNS_FOLDER]      (default: runs)

Counts, per job and rotation: draws + seeds - 1 runs (the draws train seed 0; the chosen draw's other seeds
follow). Jobs: every registered technique, the two oracles and notebook 07's four front-end variants on the
first configuration; every technique and the oracle on the second configuration; the strength-sweep checks.
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from _lib import emit

BF16_SPEEDUP = 1.68  # bench_bf16.py (baseline, 2 seeds x 6 epochs, measured side by side)


def job_label(config: dict) -> str:
    data = str(config.get("data", ""))
    if config["technique"] == "baseline" and data.endswith("-unbiased"):
        return "oracle"
    if config["technique"] == "baseline" and data.endswith("-matched"):
        return "matched_oracle"
    if config["technique"] == "baseline" and config.get("stem", "none") != "none":
        return f"baseline_{config['stem']}"
    if config["technique"] == "baseline" and config.get("input_policy") == "resize":
        return "resize_half"
    if config["technique"] == "baseline" and config.get("image_size", 64) < 64:
        return "crop_half"
    return config["technique"]


def main(runs: Path) -> None:
    from attrlib import techniques
    from attrlib.config import PROFILES
    from attrlib.data import eligible_rotations
    from attrlib.data.sources import discover
    from attrlib.study import resolve_data

    seconds = defaultdict(list)
    thorough_steps = PROFILES["thorough"]["config"]["steps"]
    for metrics in runs.glob("*/*/metrics.json"):
        config = json.loads((metrics.parent / "config.json").read_text())
        m = json.loads(metrics.read_text())
        # thorough trains its own budget (a technique's own `steps`, fine_tuning's, stays the same)
        own = techniques.get(config["technique"]).defaults.get("steps")
        scale = 1.0 if own is not None or not m.get("steps") else thorough_steps / float(m["steps"])
        seconds[job_label(config)].append(float(m.get("train_seconds", 0.0)) * scale)
    if not seconds:
        raise SystemExit(f"no finished runs under {runs}: run the default study first (make study)")
    per_job = {k: statistics.mean(v) * (1 if k == "residual_stats" else BF16_SPEEDUP) for k, v in seconds.items()}
    fallback = per_job.get("baseline", statistics.mean(per_job.values()))

    thorough = PROFILES["thorough"]
    rotations = len(eligible_rotations(discover(resolve_data("default", progress=False)).frame))
    per_rotation = thorough["draws"] + len(thorough["seeds"]) - 1
    first = [*techniques.available(), "oracle", "matched_oracle", "baseline_srm", "baseline_npr", "crop_half",
             "resize_half"]
    second = [*techniques.available(), "oracle"]
    jobs = [(j, rotations * per_rotation) for j in first] + [(j, rotations * per_rotation) for j in second]
    n_runs = sum(n for _, n in jobs) + 4  # + the strength sweep's points besides the study's own runs
    cpu = sum(per_job.get(j, fallback) * n for j, n in jobs) + 4 * per_job.get("baseline", fallback)
    emit("thorough profile cost (estimate from a default study's runs)", runs=n_runs, rotations=rotations,
         runs_per_job_and_rotation=per_rotation, train_cpu_hours=round(cpu / 3600, 1),
         wall_hours_on_2_cores=round(cpu / 3600 / 2, 1),
         measured_per_run_seconds={k: round(v, 1) for k, v in sorted(per_job.items())},
         note="training only (float32 = bf16 x 1.68); notebooks, data synthesis and evaluation add to it; "
              "GPU time not measured (no GPU was available)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs"))
