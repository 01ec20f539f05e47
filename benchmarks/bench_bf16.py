"""Figure 5: bf16 autocast on the CPU: training speed and its effect on held-out accuracy.

Trains the baseline of the default profile (data/benchmark) with Config.bf16 False and True for --seeds
seeds, interleaved, into a temporary runs folder, and reports images/s and held-out / validation accuracy
(mean over seeds). bf16 is the default only if it costs no accuracy; the input stem stays float32 anyway.
    python benchmarks/bench_bf16.py [--seeds 2] [--epochs 6]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile

from _lib import emit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=None, help="default: the default profile's")
    p.add_argument("--technique", default="baseline")
    args = p.parse_args()
    import torch

    from attrlib import sweep
    from attrlib.config import profile
    from attrlib.study import resolve_data

    overrides = dict(device="cpu", technique=args.technique)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    config, _ = profile("default", **overrides)
    config = config.replace(data=str(resolve_data("default", progress=False)))
    res = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="attrlib-bf16-") as runs:
        for seed in range(args.seeds):
            for bf16 in (False, True):
                run = sweep.train(config.replace(bf16=bf16, seed=seed, runs=runs), progress=False)
                res[bf16].append(json.loads((run / "metrics.json").read_text()))

    def summary(ms):
        return dict(images_per_s=round(statistics.mean(m["train_images_per_second"] for m in ms), 1),
                    heldout_accuracy=round(statistics.mean(m["heldout"]["accuracy"] for m in ms), 4),
                    val_accuracy=round(statistics.mean(m["val"]["accuracy"] for m in ms), 4),
                    heldout_per_seed=[round(m["heldout"]["accuracy"], 4) for m in ms])

    fp32, bf16 = summary(res[False]), summary(res[True])
    speedup = bf16["images_per_s"] / fp32["images_per_s"]
    delta = bf16["heldout_accuracy"] - fp32["heldout_accuracy"]
    val_delta = bf16["val_accuracy"] - fp32["val_accuracy"]
    emit("bf16_autocast", speedup=round(speedup, 3), heldout_accuracy_delta=round(delta, 4),
         val_accuracy_delta=round(val_delta, 4), fp32=fp32, bf16=bf16,
         seeds=args.seeds, epochs=config.epochs, technique=args.technique,
         cpu_bf16=bool(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")() in ("AVX512", "AMX")),
         cpu_capability=getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")(),
         target="an option (Config.bf16); the default only if faster and no accuracy lost",
         # a default needs more than one seed's word: faster, and neither accuracy lower
         default_bf16=bool(speedup > 1.05 and delta >= 0 and val_delta >= 0 and args.seeds >= 2), met=True)


if __name__ == "__main__":
    main()
