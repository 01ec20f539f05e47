"""Model-selection rules side by side, and the arm rule (b) picks per rotation, from finished runs' records.

The rules themselves, the score of a run under a rule and the one "pick the best" live in `attrlib.selection`;
this module applies them to a study's runs (`attrlib.records`). Every run is scored at `config.checkpoints`
points of training on `val`, `valsub` and `test` (the attribution model itself, `attrlib.training.engine`). A
rule picks one point; the held-out accuracy at that point is what the rule reports:

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

from .. import records as records_, selection
from ..rotation import Rotation

REPORTED_RULES = tuple(selection.RULES)  # every rule, the oracle included: shown side by side


def rule_accuracies(run: "str | os.PathLike | records_.Record") -> dict[str, float]:
    """Held-out accuracy of one run under each rule (NaN where the rule's split was not scored)."""
    history = (run if isinstance(run, records_.Record) else records_.read(run)).history
    return {rule: selection.heldout_accuracy(history, rule) for rule in REPORTED_RULES}


NO_VAL_SUBCLASS = "none: rule (a)"  # a rotation whose data offers no validation subclass (too few generators)


def val_subclass_label(record: records_.Record) -> str:
    """The validation subclass a run was selected on (metrics.json `val_subclass`), or NO_VAL_SUBCLASS: no
    subclass covered enough generators (`data.choose_val_subclass`), so model selection fell back to rule (a)."""
    return record.val_subclass or NO_VAL_SUBCLASS


def selection_table(runs: Mapping[str, Sequence[str | os.PathLike]]) -> pd.DataFrame:
    """One row per technique and rotation: mean held-out accuracy over seeds under each rule, the seeds, and the
    validation subclass (`val_subclass_label`: "none: rule (a)" where the rotation has none)."""
    rows = [{"arm": r.arm, "heldout": r.rotation.key, "seed": r.seed, "val_subclass": val_subclass_label(r),
             **rule_accuracies(r)} for r in records_.collect(runs)]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    cols = ["val", "valsub", "oracle", "last"]
    table = frame.groupby(["arm", "heldout"], sort=False)[cols].mean()
    table["seeds"] = frame.groupby(["arm", "heldout"], sort=False)["seed"].nunique()
    table["val_subclass"] = frame.groupby(["arm", "heldout"], sort=False)["val_subclass"].agg(
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


def select_arm(runs: Mapping[str, Sequence[str | os.PathLike]] | records_.Records,
               candidates: Sequence[str] | None = None, rule: str | None = None) -> pd.DataFrame:
    """Rule (b) one level up: per held-out rotation, the arm (technique or configuration) whose runs score best
    on that rotation's validation subclass (mean over seeds), never on its test subclass. One row per rotation:
    the chosen arm, its score, and every candidate's score.

    The score is `selection.score` under `rule` (default: each run's `Config.selection`, rule (b)): at the kept
    point, the accuracy of each run's own predictions on the validation subclass (so a closed-form technique
    such as dfr, or one that changes its test inputs, is scored as it predicts); under another rule, the
    recorded accuracy at that rule's point, without training again. The choice is `selection.choose`.
    Chosen per rotation, as DomainBed selects per test environment: averaging validation scores over
    rotations would let one rotation's choice read another's test subclass (with the `crossed` rotations, each
    rotation's validation subclass is the other's test subclass). Ties go to the earlier candidate (the simpler arm, when
    candidates are listed from simple to combined). `selected_runs` gives the chosen arms' run folders.
    """
    if candidates is not None and isinstance(runs, Mapping):
        runs = {name: runs[name] for name in candidates}  # only the candidates' folders are read
    recs = records_.collect(runs)
    names = list(candidates if candidates is not None else recs.by_arm())
    recs = records_.Records(r for name in names for r in recs.filter(arm=name))  # candidates' order
    splits: set[str] = set()
    rows = []
    for rotation, in_rotation in recs.by_rotation().items():
        means = {}
        for name in names:
            scores = [r.score(rule) for r in in_rotation.filter(arm=name)]
            splits.update(s.split or "none" for s in scores)
            means[name] = float(np.mean([s.value for s in scores])) if scores else np.nan
        chosen = selection.choose(means)
        rows.append({"heldout": rotation.key, "chosen": chosen, "score": means.get(chosen, np.nan),
                     "val_subclass": val_subclass_label(in_rotation[0]), **{f"score {n}": means[n] for n in names}})
    table = pd.DataFrame(rows)
    rules = {rule or r.config.selection for r in recs} - {selection.KEPT}  # the rules asked for
    applied = "rule (b)" if not rules else f"rule(s) {'/'.join(sorted(rules))} (applied to the finished runs)"
    table.attrs["caption"] = (
        f"Arm chosen per held-out rotation by {applied}: the highest mean accuracy (over seeds) of each arm's "
        "predictions on the rotation's validation subclass; the rotation's test subclass is never read. Ties go "
        f"to the arm listed first. Scored on: {', '.join(sorted(splits))} (valsub: the validation subclass; val: "
        "in-distribution validation, where a rotation has none).")
    return table


def ranked_arms(choice: pd.DataFrame, k: int) -> dict[str, list[str]]:
    """Rule (b)'s ranking, k deep: per held-out rotation of `select_arm`'s table (its key), the `k` arms with the best
    validation-subclass scores, best first (ties to the arm listed first; an arm without a score is never
    ranked). The first is the arm `select_arm` chose. The test subclass is never read."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k={k!r}: the number of arms to rank must be an integer, 1 or more")
    names = [c[len("score "):] for c in choice.columns if c.startswith("score ")]
    return {row["heldout"]: selection.ranked({n: float(row[f"score {n}"]) for n in names}, k)
            for _, row in choice.iterrows()}


def selected_runs(runs: Mapping[str, Sequence[str | os.PathLike]] | records_.Records, choice: pd.DataFrame) -> list:
    """The run folders of the arm `select_arm` chose in each rotation: one arm assembled from several."""
    by_rotation = {Rotation.parse(k): name for k, name in zip(choice["heldout"], choice["chosen"])}
    by_arm = records_.collect(runs).by_arm()
    return [r.folder for name in dict.fromkeys(by_rotation.values()) for r in by_arm.get(name, ())
            if by_rotation.get(r.rotation) == name]


def runs_without(runs: Mapping[str, Sequence[str | os.PathLike]], rotations: Sequence[str]) -> dict[str, list]:
    """`runs` without the runs of the given held-out rotations (Rotations, or keys "a" or "a+b"): e.g. the
    rotations whose test accuracy was read while a study's arms were designed, so that the rest can be reported
    apart."""
    drop = {Rotation(r) for r in rotations}
    recs = records_.collect(runs)
    return {name: [r.folder for r in recs.filter(arm=name) if r.rotation not in drop] for name in runs}
