"""What notebook 12 does beyond single calls: choose the generators a leave-one-generator-out study leaves out,
train every arm without each of them (crossed with the held-out subclass rotations), and set the open-set
numbers beside the closed-set model's.

    left_out = unknown_rotations(s.data, s.heldout, n=s.knobs.open_world_generators)
    jobs = open_world_jobs("baseline,weighted_sampling", s.knobs.open_world_arms)   # + notebook 11's arms
    runs = train_open_world(jobs, left_out, s.profile, s.seeds, **s.common)
    table, frames = evaluation.open_set_table(runs, frr=0.05)
    arms = evaluation.pooled_versus_reference(table, frames, reference="baseline")  # over rotations and seeds
    goal = closed_set_comparison(table, closed_runs, score="mahalanobis")
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import records, sweep
from ..config import comma_names
from ..data import load_study_data
from ..data.sources import discover
from ..errors import ConfigError, DataError
from ..evaluation.openset import balanced_accuracy
from ..rotation import Rotation
from ..runfolder import load_predictions
from .closing import ARMS


def unknown_rotations(root: str | os.PathLike, heldout: Sequence[str], n: int = 0,
                      unknown: str | Iterable[str] = "") -> list[str]:
    """The generators left out, one rotation each: those named in `unknown` (comma-separated), else the first `n`
    (0: all) in name order whose removal leaves a study the data layer accepts (every known generator keeps a
    training image, at least two known generators)."""
    names = comma_names(unknown)
    if names:
        for g in names:
            load_study_data(root, heldout=heldout, unknown_generators=(g,))  # a clear error for a bad name
        return names
    generators = load_study_data(root, heldout=heldout).generators
    usable = []
    for g in generators:
        try:
            load_study_data(root, heldout=heldout, unknown_generators=(g,))
        except DataError:
            continue
        usable.append(g)
        if n and len(usable) == n:
            break
    if not usable:
        raise ConfigError(f"no generator of {root} can be left out of training with held-out {list(heldout)}")
    return usable


# the techniques notebook 12 trains without each left-out generator: its `techniques` parameter's default (a
# notebook's parameters cell holds literals; `attrlib launch` reads this copy, tests check the two agree)
TECHNIQUES = "baseline,weighted_sampling,group_dro"


def open_world_jobs(techniques: str | Iterable[str], arms: str | Iterable[str] = "") -> dict[str, dict[str, Any]]:
    """Notebook 12's jobs ({label: Config overrides}): the named techniques, then notebook 11's arms
    (`closing.ARMS`) named in `arms` (comma-separated names, or "all"; a label among the techniques is kept once)."""
    chosen = list(ARMS) if comma_names(arms) == ["all"] else comma_names(arms)
    unknown = [a for a in chosen if a not in ARMS]
    if unknown:
        raise ConfigError(f"unknown arm(s) {', '.join(unknown)} (open_world_arms); notebook 11's arms: "
                          f"{', '.join(ARMS)}, or all")
    return {**{t: {"technique": t} for t in comma_names(techniques)}, **{a: dict(ARMS[a]) for a in chosen
                                                                         if a not in comma_names(techniques)}}


def train_open_world(arms: Iterable[str] | Mapping[str, Mapping[str, Any]], left_out: Sequence[str], profile: str,
                     seeds: Sequence[int] | None = None, progress: bool = True, **common: Any) -> dict[str, list]:
    """`sweep.train_many` once per left-out generator (Config.unknown_generators): {arm: run folders of every
    left-out generator, rotation and seed}."""
    runs: dict[str, list] = {}
    for g in left_out:
        for label, dirs in sweep.train_many(arms, profile, seeds, progress, unknown_generators=(g,), **common).items():
            runs.setdefault(label, []).extend(dirs)
    return runs


def closed_set_comparison(table: pd.DataFrame, closed: Mapping[str, Sequence[str | os.PathLike]],
                          score: str) -> pd.DataFrame:
    """Per arm, left-out generator and rotation (seeds pooled): the open-set run's balanced accuracy on known
    test images at the threshold of `score`, beside the closed-set run's (the same arm trained on every
    generator, `closed`) on the same images, and the drop. The closed-set model may name the left-out generator
    for a known image; that counts as wrong, as it would in use."""
    rows = []
    part = table[table["score"] == score]
    for (arm, heldout, unknown), group in part.groupby(["arm", "heldout", "unknown"], sort=False):
        accuracies = []
        for r in records.collect(list(closed.get(arm, []))):
            if r.rotation != Rotation.parse(heldout) or r.seed not in set(group["seed"]):
                continue
            test = load_predictions(r.folder, "test")
            test = test[~test["generator"].isin(unknown.split("+"))]
            accuracies.append(balanced_accuracy(test["generator"], test["pred"]))
        closed_ba = float(np.mean(accuracies)) if accuracies else np.nan
        open_ba = float(group["balanced_accuracy_at_threshold"].mean())
        rows.append({"arm": arm, "heldout": heldout, "unknown": unknown, "score": score,
                     "auroc": float(group["auroc"].mean()), "oscr": float(group["oscr"].mean()),
                     "balanced_accuracy_at_threshold": open_ba, "closed_set_balanced_accuracy": closed_ba,
                     "drop": closed_ba - open_ba})
    out = pd.DataFrame(rows)
    out.attrs["caption"] = (f"Open-set runs (one generator left out) at the {score} threshold against the same arm "
                            "trained on every generator (closed set), balanced accuracy on the known generators' test "
                            "images (a rejected known counts as wrong); drop = closed - open.")
    return out


def generator_folder(root: str | os.PathLike, generator: str) -> str:
    """The folder holding every image of `generator` in the data at `root` (their common parent): what notebook
    12 hands to `attrlib.predict` as "a folder of new images"."""
    paths = discover(root).frame.query("generator == @generator")["path"]
    if paths.empty:
        raise DataError(f"no image of generator {generator!r} in {root}")
    return os.path.commonpath([os.path.dirname(p) for p in paths])
