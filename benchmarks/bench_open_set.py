"""Issue 22's goal, measured: open-set attribution under leave-one-generator-out rotations.

Trains each arm of the default profile without each left-out generator (Config.unknown_generators) and with every
generator (the closed-set run), then prints `evaluation.open_set_table` (AUROC and OSCR with intervals per score,
accuracy at the threshold), the closed-set comparison and AUROC on seen vs unseen content, thresholds chosen on
val (and, with --valsub, on the validation subclass too).
    python benchmarks/bench_open_set.py --data DIR --heldout military_vehicle --unknown stylegan3,latent_diffusion
           [--arms baseline] [--steps 390] [--runs RUNS] [--valsub]
Measured (2 cores shared, issue 22's report): the default benchmark, baseline, stylegan3 / latent_diffusion left
out: MSP AUROC 0.846 / 0.851; realdev (held out art): 0.44 / 0.25 / 0.62 for stylegan2 / dcgan / stable_diffusion.
"""
from __future__ import annotations

import argparse
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="data folder or manifest (e.g. attrlib synth --out DIR)")
    p.add_argument("--heldout", default="military_vehicle")
    p.add_argument("--unknown", required=True, help="generators left out, comma-separated, one rotation each")
    p.add_argument("--arms", default="baseline", help="techniques, comma-separated")
    p.add_argument("--steps", type=int, default=None, help="default: the default profile's")
    p.add_argument("--runs", default="runs")
    p.add_argument("--n-boot", type=int, default=200)
    p.add_argument("--valsub", action="store_true", help="also choose the thresholds on the validation subclass")
    args = p.parse_args()
    import pandas as pd
    import torch

    from attrlib import evaluation, sweep
    from attrlib.study import open_world

    torch.set_num_threads(1)
    pd.set_option("display.width", 200)
    common = dict(data=args.data, runs=args.runs, device="cpu", heldout=(args.heldout,),
                  **({"steps": args.steps} if args.steps else {}))
    arms, start = args.arms.split(","), time.time()
    open_runs = open_world.train_open_world(arms, args.unknown.split(","), "default", (0,), progress=False, **common)
    closed = sweep.train_many(arms, "default", (0,), progress=False, **common)
    print(f"trained in {time.time() - start:.0f} s")
    columns = ["arm", "unknown", "score", "auroc", "auroc_low", "auroc_high", "oscr", "balanced_accuracy",
               "balanced_accuracy_at_threshold", "unknown_flagged", "known_rejected"]
    table, frames = evaluation.open_set_table(open_runs, n_boot=args.n_boot)
    print(f"thresholds on val:\n{table[columns].round(3).to_string()}")
    if args.valsub:
        on_valsub, _ = evaluation.open_set_table(open_runs, n_boot=args.n_boot, calibration="valsub")
        print(f"thresholds on valsub:\n{on_valsub[columns].round(3).to_string()}")
    for score in evaluation.SCORES:
        print(open_world.closed_set_comparison(table, closed, score).round(3).to_string())
        print(evaluation.by_content_table(table, frames, score).round(3).to_string())


if __name__ == "__main__":
    main()
