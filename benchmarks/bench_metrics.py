"""The cost of a run's seed-style metrics (`evaluation.metrics.split_metrics`, called per run and split by the summary
tables, `floors` and metrics.json), computed from one confusion matrix against scikit-learn's `classification_report`
(the code before), side by side in one process, and whether every number is the same float.

    python benchmarks/bench_metrics.py [--runs 200] [--images 176]

The workload: `--runs` held-out splits of `--images` images over 6 generators (the default benchmark's pool per
rotation), each scored once with the split's own predictions and twice more as `floors` does (a constant predictor).
"""
from __future__ import annotations

import argparse

import numpy as np
from _lib import Timer, emit
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

from attrlib.evaluation.metrics import split_metrics


def split_metrics_before(y_true, y_pred, generators):
    """split_metrics as it was: classification_report, accuracy_score and confusion_matrix."""
    labels = list(range(len(generators)))
    rep = classification_report(y_true, y_pred, labels=labels, target_names=generators, output_dict=True,
                                zero_division=0)
    present = sorted(set(np.asarray(y_true).tolist()))
    names = [generators[i] for i in present]
    macro = lambda key: float(np.mean([rep[g][key] for g in names]))  # noqa: E731
    return {"n": int(len(y_true)), "accuracy": float(accuracy_score(y_true, y_pred)), "balanced_accuracy": macro("recall"),
            "macro_precision": macro("precision"), "macro_recall": macro("recall"), "macro_f1": macro("f1-score"),
            "macro_over": names,
            "per_generator": {g: {"precision": float(rep[g]["precision"]), "recall": float(rep[g]["recall"]),
                                  "f1": float(rep[g]["f1-score"]), "support": int(rep[g]["support"])}
                              for g in generators},
            "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--images", type=int, default=176)
    args = ap.parse_args()
    generators = [f"g{i}" for i in range(6)]
    draw = np.random.default_rng(0)
    work = []
    for _ in range(args.runs):
        y = draw.integers(0, 6, args.images)
        p = np.where(draw.random(args.images) < 0.6, y, draw.integers(0, 6, args.images))
        work += [(y, p), (y, np.full_like(y, np.bincount(y).argmax())), (y, np.zeros_like(y))]
    split_metrics(*work[0], generators), split_metrics_before(*work[0], generators)  # imports, caches
    with Timer() as before:
        old = [split_metrics_before(y, p, generators) for y, p in work]
    with Timer() as after:
        new = [split_metrics(y, p, generators) for y, p in work]
    emit("split_metrics", calls=len(work), images=args.images, cpu_s_classification_report=round(before.cpu_seconds, 2),
         cpu_s_one_confusion_matrix=round(after.cpu_seconds, 2), speedup=round(before.cpu_seconds / after.cpu_seconds, 1),
         identical=old == new)


if __name__ == "__main__":
    main()
