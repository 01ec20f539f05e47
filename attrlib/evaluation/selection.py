"""Model-selection rules side by side (DomainBed's `model_selection.py`), read from the run folders' history.

Every run is scored at `config.checkpoints` points of training on `val`, `valsub` and `test` (the attribution
model itself, `attrlib.training.engine`). A rule picks one point; the held-out accuracy at that point is what
the rule reports:

- (a) `val`: the best in-distribution validation accuracy (the same biased cells as training);
- (b) `valsub`: the best accuracy on the validation subclass, kept out of training (the study's rule: what a
  run's predictions.csv holds);
- (c) `oracle`: the best held-out accuracy itself: an upper bound that peeks at the test set, shown only as such;
- `last`: the last point (what the study used before the rules existed).

Ties go to the later point, as in the engine.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import runfolder

RULES = {"val": "val_accuracy", "valsub": "valsub_accuracy", "oracle": "test_accuracy"}


def rule_accuracies(run: str | os.PathLike) -> dict[str, float]:
    """Held-out accuracy of one run under each rule (NaN where the rule's split was not scored)."""
    points = [h for h in runfolder.read_history(run) if "test_accuracy" in h]
    out = {"last": points[-1]["test_accuracy"] if points else np.nan}
    for rule, key in RULES.items():
        scored = [h for h in points if key in h]
        if not scored:
            out[rule] = np.nan
            continue
        best = max(h[key] for h in scored)
        out[rule] = [h for h in scored if h[key] == best][-1]["test_accuracy"]
    return out


def selection_table(runs: Mapping[str, Sequence[str | os.PathLike]]) -> pd.DataFrame:
    """One row per technique and rotation: mean held-out accuracy over seeds under each rule, and the seeds."""
    rows = []
    for name, dirs in runs.items():
        for d in dirs:
            config = runfolder.read_config(d)
            rows.append({"technique": name, "heldout": "+".join(config.heldout), "seed": config.seed,
                         **rule_accuracies(d)})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    cols = ["val", "valsub", "oracle", "last"]
    table = frame.groupby(["technique", "heldout"], sort=False)[cols].mean()
    table["seeds"] = frame.groupby(["technique", "heldout"], sort=False)["seed"].nunique()
    table = table.reset_index()
    table.attrs["caption"] = (
        "Held-out accuracy of the attribution model under each model-selection rule (mean over seeds): (a) val, "
        "best in-distribution validation; (b) valsub, best accuracy on the validation subclass kept out of "
        "training (the rule every other table uses); (c) oracle, best held-out accuracy itself: an upper bound "
        "that peeks at the test set, not a result; last, the last scoring point.")
    return table
