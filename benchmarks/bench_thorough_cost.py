"""What the `thorough` profile costs, from the measured runs of a finished default study (an estimate, labelled so).

The thorough profile (every rotation, five seeds, eight hyper-parameter draws per job and rotation, float32,
the second benchmark configuration) is too long to time on a 2-core CPU; this counts the runs it trains and
prices each with the training seconds the same job took in a finished `default` study (its metrics.json,
train_seconds, bf16), scaled to thorough's step budget and by the bf16 speed-up measured by bench_bf16.py
(thorough trains in float32).

    python benchmarks/bench_thorough_cost.py [RUNS_FOLDER]      (default: runs)

Counts, per job and rotation: draws + seeds - 1 runs (the draws train seed 0; the chosen draw's other seeds
follow). Jobs: bench_profile_cost.py's `study_jobs("thorough")`, the study's own run list
(`attrlib.study.jobs.study_jobs`: every notebook's, notebook 11's arms and variants, the target-data references,
notebook 12's runs without a generator), each priced by the same job's default-study runs where there are some.
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from _lib import emit
from bench_profile_cost import benchmark_rotations, study_jobs

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


def _measured_label(label: str) -> str:
    """bench_profile_cost.py's job label as `job_label` names the same job's runs in a default study."""
    label = label.split(" (")[0].split(" [")[0]  # without "(without a generator)" and the data tag "[benchmark-...]"
    return {"strength sweep": "baseline", "crop_32px": "crop_half", "resize_32px": "resize_half"}.get(label, label)


def main(runs: Path) -> None:
    from attrlib import techniques
    from attrlib.config import PROFILES

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

    # the runs the thorough study trains: bench_profile_cost.py's count (notebooks 01-11), each priced by the same
    # job's runs in the default study (by its label, else its technique's, else the baseline's)
    jobs = study_jobs("thorough")
    n_runs = sum(j["runs"] for j in jobs)
    cpu = sum(j["runs"] * per_job.get(_measured_label(j["label"]),
                                      per_job.get(j["config"].technique, fallback)) for j in jobs)
    thorough = PROFILES["thorough"]
    rotations = benchmark_rotations()
    per_rotation = thorough["draws"] + len(thorough["seeds"]) - 1
    emit("thorough profile cost (estimate from a default study's runs)", runs=n_runs, rotations=rotations,
         runs_per_job_and_rotation=per_rotation, train_cpu_hours=round(cpu / 3600, 1),
         wall_hours_on_2_cores=round(cpu / 3600 / 2, 1),
         measured_per_run_seconds={k: round(v, 1) for k, v in sorted(per_job.items())},
         note="training only (float32 = bf16 x 1.68); notebooks, data synthesis and evaluation add to it; "
              "GPU time not measured (no GPU was available)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs"))
