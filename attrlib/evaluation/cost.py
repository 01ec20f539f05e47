"""What each arm of a study costs to train, from its runs' metrics.json (measured, not estimated).

    training_cost(runs, baseline="baseline")   one row per arm: seconds per run (optimiser steps, the one-off
                                               `prepare` work, the upstream run an arm starts from), images per
                                               second, and the ratio to the baseline's seconds per run

Seconds are wall-clock on whatever machine trained the runs; compare arms trained on one machine in one study
(the ratio column), not seconds across machines.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import records
from ..errors import CheckpointError


def training_cost(runs: Mapping[str, Sequence[str | os.PathLike]], baseline: str = "baseline") -> pd.DataFrame:
    """Mean training cost per run of every arm; `vs baseline` = its total over the baseline's (NaN without one).

    `upstream s` is the mean seconds of the finished run an arm's technique starts from (`Technique.upstream`:
    fine_tuning and dfr start from the baseline of their own config, e.g. dfr on the local/srm_rgb model from
    that model's ERM run; jtt from that ERM run cut to `id_steps`, its identification model), since a study
    that trains the arm alone pays for that run too;
    `prepare s` is the work before the first step (a closed-form fit, JTT's error set), absent (0) on
    a run that was resumed."""
    rows = []
    for name, recs in records.collect(runs).by_arm().items():
        metrics = [r.metrics for r in recs]
        upstream = [_own_seconds(r.upstream) for r in recs] if recs[0].upstream is not None else [0.0]
        rows.append({"arm": name, "technique": recs[0].technique, "runs": len(recs),
                     "steps": int(np.mean([m.get("steps", 0) for m in metrics])),
                     "train s": float(np.mean([m.get("train_seconds", np.nan) for m in metrics])),
                     "prepare s": float(np.mean([m.get("prepare_seconds", 0.0) for m in metrics])),
                     "starts from": recs[0].starts_from,
                     "img/s": float(np.mean([m.get("train_images_per_second", np.nan) for m in metrics])),
                     "upstream s": float(np.mean(upstream))})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    own = table.set_index("arm")["train s"] + table.set_index("arm")["prepare s"]
    base = float(own[baseline]) if baseline in own.index else np.nan
    table["total s"] = table["train s"] + table["prepare s"] + table["upstream s"]
    table["vs baseline"] = table["total s"] / base if np.isfinite(base) else np.nan
    table.attrs["caption"] = (
        "Training cost per run (mean over the arm's runs: rotations x seeds), wall-clock seconds on the machine "
        "that trained them: optimiser steps (`train s`), the one-off work before the first step (`prepare s`), "
        "and the upstream run an arm starts from (`upstream s`: the ERM run of the same config; counted because "
        f"training the arm alone needs it; NaN when that run is not in the runs folder). `vs baseline`: total over the baseline's ({baseline!r}) seconds per run. Runs "
        "trained in parallel share the CPU: compare ratios within one study.")
    return table


def _own_seconds(folder) -> float:
    """Training plus prepare seconds of the finished run folder (NaN when it is not there)."""
    try:
        m = records.read(folder).metrics
    except CheckpointError:
        return float("nan")
    return float(m.get("train_seconds", np.nan)) + float(m.get("prepare_seconds", 0.0))
