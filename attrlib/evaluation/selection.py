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


NO_VAL_SUBCLASS = "none: rule (a)"  # a rotation whose data offers no validation subclass (too few generators)


def val_subclass_label(run: str | os.PathLike) -> str:
    """The validation subclass a run was selected on (metrics.json `val_subclass`), or NO_VAL_SUBCLASS: no
    subclass covered enough generators (`data.choose_val_subclass`), so model selection fell back to rule (a)."""
    return runfolder.load_metrics(run).get("val_subclass") or NO_VAL_SUBCLASS


def selection_table(runs: Mapping[str, Sequence[str | os.PathLike]]) -> pd.DataFrame:
    """One row per technique and rotation: mean held-out accuracy over seeds under each rule, the seeds, and the
    validation subclass (`val_subclass_label`: "none: rule (a)" where the rotation has none)."""
    rows = []
    for name, dirs in runs.items():
        for d in dirs:
            config = runfolder.read_config(d)
            rows.append({"technique": name, "heldout": "+".join(config.heldout), "seed": config.seed,
                         "val_subclass": val_subclass_label(d), **rule_accuracies(d)})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    cols = ["val", "valsub", "oracle", "last"]
    table = frame.groupby(["technique", "heldout"], sort=False)[cols].mean()
    table["seeds"] = frame.groupby(["technique", "heldout"], sort=False)["seed"].nunique()
    table["val_subclass"] = frame.groupby(["technique", "heldout"], sort=False)["val_subclass"].agg(
        lambda v: "/".join(dict.fromkeys(v)))
    table = table.reset_index()
    table.attrs["caption"] = (
        "Held-out accuracy of the attribution model under each model-selection rule (mean over seeds): (a) val, "
        "best in-distribution validation; (b) valsub, best accuracy on the validation subclass kept out of "
        "training (the rule every other table uses); (c) oracle, best held-out accuracy itself: an upper bound "
        "that peeks at the test set, not a result; last, the last scoring point. val_subclass: the rotation's "
        "validation subclass; \"none: rule (a)\" where no subclass covers at least 3 generators, and (b) falls back "
        "to (a).")
    return table


def select_arm(runs: Mapping[str, Sequence[str | os.PathLike]], candidates: Sequence[str] | None = None
               ) -> pd.DataFrame:
    """Rule (b) one level up: per held-out rotation, the arm (technique or configuration) whose runs score best
    on that rotation's validation subclass (metrics.json `selection.score`, mean over seeds), never on its test
    subclass. One row per rotation: the chosen arm, its score, and every candidate's score.

    The score is `runfolder.selection_score`: the accuracy of each run's own predictions on the validation
    subclass (so a closed-form technique such as dfr, or one that changes its test inputs, is scored as it
    predicts). Chosen per rotation, as DomainBed selects per test environment: averaging validation scores over rotations
    would let one rotation's choice read another's test subclass (with the `crossed` rotations, each rotation's
    validation subclass is the other's test subclass). Ties go to the earlier candidate (the simpler arm, when
    candidates are listed from simple to combined). `selected_runs` gives the chosen arms' run folders.
    """
    names = list(candidates if candidates is not None else runs)
    scores: dict[str, dict[str, list[float]]] = {}
    splits: set[str] = set()
    valsub: dict[str, str] = {}
    for name in names:
        for d in runs[name]:
            rotation = "+".join(runfolder.read_config(d).heldout)
            valsub.setdefault(rotation, val_subclass_label(d))
            score, split = runfolder.selection_score(d)
            splits.add(split or "none")
            scores.setdefault(rotation, {}).setdefault(name, []).append(score)
    rows = []
    for rotation, by_arm in scores.items():
        means = {name: float(np.mean(by_arm[name])) if name in by_arm else np.nan for name in names}
        finite = [n for n in names if np.isfinite(means[n])]
        chosen = max(finite, key=lambda n: (means[n], -names.index(n))) if finite else None
        rows.append({"heldout": rotation, "chosen": chosen, "score": means.get(chosen, np.nan),
                     "val_subclass": valsub[rotation], **{f"score {n}": means[n] for n in names}})
    table = pd.DataFrame(rows)
    table.attrs["caption"] = (
        "Arm chosen per held-out rotation by rule (b): the highest mean accuracy (over seeds) of each arm's "
        "predictions on the rotation's validation subclass; the rotation's test subclass is never read. Ties go "
        f"to the arm listed first. Scored on: {', '.join(sorted(splits))} (valsub: the validation subclass; val: "
        "in-distribution validation, where a rotation has none).")
    return table


def selected_runs(runs: Mapping[str, Sequence[str | os.PathLike]], choice: pd.DataFrame) -> list:
    """The run folders of the arm `select_arm` chose in each rotation: one arm assembled from several."""
    by_rotation = dict(zip(choice["heldout"], choice["chosen"]))
    return [d for name in dict.fromkeys(by_rotation.values()) for d in runs[name]
            if by_rotation.get("+".join(runfolder.read_config(d).heldout)) == name]


def runs_without(runs: Mapping[str, Sequence[str | os.PathLike]], rotations: Sequence[str]) -> dict[str, list]:
    """`runs` without the runs of the given held-out rotations ("a" or "a+b"): e.g. the rotations whose test
    accuracy was read while a study's arms were designed, so that the rest can be reported apart."""
    drop = set(rotations)
    return {name: [d for d in dirs if "+".join(runfolder.read_config(d).heldout) not in drop]
            for name, dirs in runs.items()}
