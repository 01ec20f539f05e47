"""Issue 17 §2 and §6 on real images: each model's bias gap against its target-data reference on realdev, and the
gap closed by the high-pass front ends against the baseline's target-data reference.

Protocol: PROTOCOL below (a development measurement, small on purpose: realdev is a development set, not an
evaluation set).

Writes results/realdev_bias_gap.{csv,md,tex}, results/realdev_gap_closed.{csv,md,tex} and docs/realdev.md
(generated from those tables; never edited by hand), and prints one JSON line.

    nice -n 10 python benchmarks/bench_realdev_bias_gap.py [--data ../shared/realdev/images] [--steps 48]
"""
from __future__ import annotations

import argparse

import pandas as pd
from pathlib import Path

from _lib import ROOT, emit

PROTOCOL = ("the `quick` profile (32-px crops, batch 32) with `--steps` optimiser steps, seed 0, the held-out "
            "rotation(s) `--heldout` (default `face`: 157 test images of 5 generators), the validation subclass "
            "chosen by \"auto\" (rule (b)). Models: the baseline (compact CNN on raw pixels), `srm` (the SRM "
            "high-pass stem) and `local_srm_rgb` (notebook 11's front end: 23-px receptive field on per-colour SRM "
            "residuals). Each is trained once on the biased training split and once as its own target-data "
            "reference (`target_reference`: the same model trained with the held-out subclass, `--folds` "
            "cross-fitted folds, near-duplicate groups whole). Nothing is chosen on these numbers.")
MODELS = {"baseline": {}, "srm": {"stem": "srm"}, "local_srm_rgb": {"backbone": "local", "stem": "srm_rgb"}}
COLUMNS = ["bias_gap", "bias_gap_low", "bias_gap_high", "biased_accuracy", "reference_accuracy", "verdict",
           "pairing", "images"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "realdev" / "images"))
    parser.add_argument("--heldout", nargs="+", default=["face"])
    parser.add_argument("--steps", type=int, default=48, help="optimiser steps per run (default 48)")
    parser.add_argument("--folds", type=int, default=3, help="cross-fitted folds of each reference (default 3)")
    parser.add_argument("--runs", default=str(ROOT / "benchmarks" / "runs"))
    parser.add_argument("--results", default=str(ROOT / "results"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "realdev.md"))
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--benchmark", action="store_true",
                        help="the quick embedded benchmark instead (held out: military_vehicle), each model also "
                             "against its unbiased oracle; its tables go beside realdev's in the doc")
    args = parser.parse_args()
    from attrlib import sweep
    from attrlib.evaluation import bias_gap_table, summary_table
    from attrlib.io import atomic_write_text
    from attrlib.reporting import save_table
    from attrlib.runfolder import load_metrics
    from attrlib.study import closing, session

    dataset, oracle_data = "realdev", ""
    if args.benchmark:
        s = session(profile="quick", progress=False)
        dataset, args.data, oracle_data, args.heldout = "benchmark", str(s.data), str(s.oracle_data), ["military_vehicle"]
    if not Path(args.data).is_dir():
        raise SystemExit(f"{args.data} does not exist; pass --data <realdev>/images")
    common = dict(data=args.data, runs=args.runs, device="cpu", steps=args.steps, input_policy="crop",
                  image_size=32, val_subclass="auto")
    jobs = {}
    for name, model in MODELS.items():
        jobs[name] = {"technique": "baseline", **model}
        jobs[f"{name} target_reference"] = {"technique": "target_reference", **model,
                                            "technique_params": {"folds": args.folds}}
        if oracle_data:
            jobs[f"{name} oracle"] = {"technique": "baseline", **model, "data": oracle_data}
    runs = sweep.train_many(jobs, "quick", (0,), rotations=[(h,) for h in args.heldout], progress=False, **common)
    # the training time the runs record (an assembled reference: the sum of its folds'), whether trained now or reused
    seconds = sum(load_metrics(d).get("train_seconds", 0.0) for dirs in runs.values() for d in dirs)
    gaps = bias_gap_table(closing.bias_gap_models(runs, runs, MODELS), n_boot=args.n_boot)
    closed = summary_table({name: runs[name] for name in MODELS},
                           oracle={"target_reference": runs["baseline target_reference"]}, n_boot=args.n_boot)
    closed = closed[["accuracy", "balanced_accuracy", "difference", "difference_low", "difference_high",
                     "gap_closed_target_reference", "gap_closed_target_reference_low",
                     "gap_closed_target_reference_high", "verdict"]]
    closed.attrs["caption"] = ("Gap closed vs the baseline's target-data reference = (model - baseline) / "
                               "(reference - baseline), paired by image; balanced accuracy beside accuracy.")
    save_table(gaps, f"{dataset}_bias_gap", args.results)
    save_table(closed, f"{dataset}_gap_closed", args.results)
    atomic_write_text(Path(args.results) / f"{dataset}_bias_gap_run.txt",
                      f"rotation(s) {', '.join(args.heldout)}; {args.steps} steps; {args.folds} folds; {len(jobs)} arms; "
                      f"{seconds:.0f} s of training in all (the runs' train_seconds, on a shared 2-core machine)\n")
    if args.benchmark:
        emit("benchmark_bias_gap", bias_gap={k: round(float(v), 3) for k, v in gaps["bias_gap"].items()})
        return
    bench = Path(args.results) / "benchmark_bias_gap.csv"
    beside = [] if not bench.is_file() else [
        "## On the quick embedded benchmark, side by side",
        "",
        "The same models and budget on the quick benchmark (`--benchmark`, held out: military_vehicle; "
        + (Path(args.results) / "benchmark_bias_gap_run.txt").read_text().strip() + "), each against its "
        "target-data reference and its unbiased oracle (the same model by ERM on the unbiased twin):",
        "",
        pd.read_csv(bench, index_col=0)[COLUMNS].round(3).to_markdown(),
        ""]
    doc = "\n".join([
        "# realdev: per-model bias gap against the target-data reference",
        "",
        "Generated by `benchmarks/bench_realdev_bias_gap.py` from `results/realdev_bias_gap.csv` and",
        "`results/realdev_gap_closed.csv`; do not edit by hand. realdev is a development set: nothing here was",
        "chosen on it, and the budget is small (see the protocol), so these are development numbers.",
        "",
        "Protocol: " + PROTOCOL,
        f"This run: rotation(s) {', '.join(args.heldout)}; {args.steps} steps; {args.folds} folds; {len(jobs)} "
        f"arms; {seconds:.0f} s of training in all (the runs' train_seconds, on a shared 2-core machine).",
        "",
        "Commands: `nice -n 10 python benchmarks/bench_realdev_bias_gap.py --steps "
        f"{args.steps} --folds {args.folds} --benchmark` (when the benchmark's tables are below), then the same "
        "without `--benchmark` (this page)."
        "",
        "## Bias gap: each model minus its own target-data reference",
        "",
        gaps[COLUMNS].round(3).to_markdown(),
        "",
        gaps.attrs["caption"],
        "",
        "## Gap closed against the baseline's target-data reference",
        "",
        closed.round(3).to_markdown(),
        "",
        "Gap closed = (model - baseline) / (reference - baseline), the ratio of the mean paired differences per "
        "bootstrap replicate; NaN (or an unbounded interval) where the reference does not beat the baseline.",
        "", *beside])
    atomic_write_text(Path(args.doc), doc)
    emit("realdev_bias_gap", steps=args.steps, folds=args.folds, heldout=args.heldout,
         train_seconds=round(seconds, 1),
         bias_gap={k: round(float(v), 3) for k, v in gaps["bias_gap"].items()},
         reference_accuracy={k: round(float(v), 3) for k, v in gaps["reference_accuracy"].items()},
         gap_closed={k: round(float(v), 3) for k, v in closed["gap_closed_target_reference"].items()})


if __name__ == "__main__":
    main()
