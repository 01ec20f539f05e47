"""What sharing the perturbed data sets saves the robustness table: `evaluation.robustness_table` (each rotation's
images decoded and perturbed once for all its runs) against the per-run path it replaced (`perturbed_accuracy` for
each run: its own decoding and perturbing of the same images), on the same runs, one process, one torch thread.

    python benchmarks/bench_robustness.py RUN_DIR [RUN_DIR ...] [--max-images 96] [--repeats 1]

Give finished run folders (with their checkpoints), e.g. several arms and seeds of one rotation of a real folder
(large images are where decoding and perturbing cost most). Both paths must give the same accuracies (checked);
the figure is the ratio of CPU seconds, per-run path / shared.
"""
from __future__ import annotations

import argparse

from _lib import Timer, emit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="finished run folders")
    ap.add_argument("--max-images", type=int, default=96, help="held-out images per run (notebooks 09 and 11: 96)")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    import pandas as pd
    import torch

    from attrlib.evaluation import robustness
    from attrlib.runfolder import iter_runs

    torch.set_num_threads(1)
    runs = {"run": args.runs}
    perturbations = robustness.standard_perturbations()
    loaded = list(iter_runs(runs, None, None, args.max_images))  # for the figures below; each path loads its own
    rotations = sorted({run.config.heldout.key for _, run, _ in loaded})
    timings = {"per_run": [], "shared": []}
    for _ in range(args.repeats):
        with Timer() as t:  # both paths timed with their loading of the checkpoints and data
            old = pd.concat([robustness.perturbed_accuracy(run.technique, frame, run.data, perturbations,
                                                           run.config.input_policy, run.config.image_size,
                                                           patches=run.config.test_patches)
                             for _, run, frame in iter_runs(runs, None, None, args.max_images)], ignore_index=True)
        timings["per_run"].append((t.seconds, t.cpu_seconds))
        with Timer() as t:
            new = robustness.robustness_table(runs, perturbations=perturbations, max_images=args.max_images)
        timings["shared"].append((t.seconds, t.cpu_seconds))
    same = old["accuracy"].tolist() == new["accuracy"].tolist()
    per_run_cpu = min(c for _, c in timings["per_run"])
    shared_cpu = min(c for _, c in timings["shared"])
    emit("robustness_table_shared_datasets", runs=len(loaded), rotations=rotations,
         images_per_run=int(loaded[0][2].shape[0]), perturbations=len(perturbations),
         per_run_seconds=round(min(w for w, _ in timings["per_run"]), 2), per_run_cpu_seconds=round(per_run_cpu, 2),
         shared_seconds=round(min(w for w, _ in timings["shared"]), 2), shared_cpu_seconds=round(shared_cpu, 2),
         cpu_ratio=round(per_run_cpu / shared_cpu, 2), same_accuracies=same)
    if not same:
        raise SystemExit("the shared path gave other accuracies than the per-run path")


if __name__ == "__main__":
    main()
