"""Model selection, all of it (DomainBed's `model_selection.py`): the rules, the engine's comparison of scoring
points, a finished run's score under any rule, and the one "pick the best candidate".

    RULES                       rule name -> the history column it maximises (None: the last point)
    applicable(rule, splits)    the rule a run can apply: valsub falls back to val, val to last
    better(score, kept)         the engine's comparison of a scoring point with the kept one (ties: the later)
    point(history, rule)        the scoring point a rule picks from a run's history.jsonl
    score(record, rule)         a finished run's validation score under a rule (a `attrlib.records.Record`)
    choose(candidates)          the best of several scored candidates (the search's draws, a rotation's arms)

Every scoring point of every run is recorded (history.jsonl: val / valsub / test accuracy of the attribution
model; trajectory.csv: its test predictions), so a rule applies to finished runs: `Config.selection` is the
rule a run's results are *read* under, not part of what it computes, and it stays out of the run's identity.
The engine always keeps the state of KEPT (rule (b), the study's): predictions.csv, metrics.json and the
checkpoint are that point's. Under another rule, `score` reads the history (the attribution model's
accuracies at the point that rule picks); per-image predictions of such a point exist for the test split only
(trajectory.csv, the attribution model); statistics that pair images over every split, the LLR and anything
that rebuilds the model (`runfolder.load_run`) stand for the kept point, and say so through metrics.json's
`selection`.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple, Sequence

# rule -> the history.jsonl column it maximises at the scoring points (None: the last point). (a) val:
# in-distribution validation; (b) valsub: the validation subclass, kept out of training (the study's rule);
# (c) oracle: held-out accuracy itself, an upper bound that peeks at the test set: shown, never chosen by.
RULES: dict[str, str | None] = {"valsub": "valsub_accuracy", "val": "val_accuracy", "last": None,
                                "oracle": "test_accuracy"}
SELECTABLE = ("valsub", "val", "last")  # what Config.selection may name: the test set never chooses
KEPT = "valsub"   # the rule whose point the engine keeps (predictions.csv, checkpoint `selected`)
FALLBACK = {"valsub": "val", "val": "last"}  # a rule whose split a run lacks gives way to the next
MEANING = {"last": "the last epoch", "val": "rule (a), best in-distribution validation accuracy",
           "valsub": "rule (b), best accuracy on the validation subclass kept out of training",
           "oracle": "rule (c), best held-out accuracy: an upper bound that peeks at the test set"}


def split_of(rule: str) -> str | None:
    """The split a rule scores on ("valsub", "val", "test"), None for "last"."""
    column = RULES[rule]
    return column[: -len("_accuracy")] if column else None


def applicable(rule: str, splits) -> str:
    """The rule a run can apply given the splits it scores: the requested one when its split is there; valsub
    falls back to val, val to last (no validation images at all)."""
    while rule in FALLBACK and split_of(rule) not in splits:
        rule = FALLBACK[rule]
    return rule


def better(score: float, kept: Mapping[str, Any] | None) -> bool:
    """Whether a scoring point with `score` replaces the point kept so far (ties: the later point)."""
    return kept is None or score >= kept["score"]


def point(history: Sequence[Mapping[str, Any]], rule: str) -> Mapping[str, Any] | None:
    """The scoring point (a history.jsonl entry) a rule picks, as the engine would have kept it; None when the
    run has no scored point with the rule's column. No fallback: see `applicable`."""
    points = [h for h in history if "test_accuracy" in h]
    column = RULES[rule]
    if column is None:
        return points[-1] if points else None
    kept = None
    for h in points:
        if column in h and better(h[column], kept):
            kept = {"score": h[column], "entry": h}
    return kept["entry"] if kept else None


class Score(NamedTuple):
    value: float    # the validation accuracy runs are compared by under the rule (NaN: nothing to score)
    split: str      # the split it was scored on ("valsub", "val"; "" when none)
    rule: str       # the rule applied (after its fallback)
    step: int | None  # the scoring point it picks (None: the run's kept state, e.g. a closed-form technique)
    kept: bool      # the run's own kept point: predictions.csv and metrics.json stand for it


def score(record, rule: str = KEPT) -> Score:
    """A finished run's score under `rule` (a record: `attrlib.records.Record`, its `history` and `metrics`).

    The rule's point (with its fallback) is found in the history. When it is the point the run kept (or the run
    has no scored points: a technique fitted in closed form), the score is metrics.json's: the accuracy of the
    run's own predictions (`technique.predict` with the kept state, so a technique that transforms its test
    inputs is scored as it predicts). Otherwise it is the history's: the attribution model at that point. Runs
    are compared on the rule's split; "last" compares on the validation subclass, else on validation. The test
    split never scores."""
    if rule not in SELECTABLE:
        raise ValueError(f"selection rule {rule!r} cannot choose (valid: {', '.join(SELECTABLE)}); "
                         "the oracle peeks at the test set")
    history, metrics = record.history, record.metrics
    splits = {s for s in ("val", "valsub") for h in history if f"{s}_accuracy" in h} or \
        {s for s in ("val", "valsub") if isinstance(metrics.get(s), dict)}
    applied = applicable(rule, splits)
    chosen = point(history, applied)
    split = split_of(applied) or next((s for s in ("valsub", "val") if s in splits), "")
    kept_step = (metrics.get("selection") or {}).get("step")
    if chosen is None or chosen.get("step") == kept_step:
        value = metrics.get(split, {}).get("accuracy") if isinstance(metrics.get(split), dict) else None
        return Score(float("nan") if value is None else float(value), split if value is not None else "",
                     applied, kept_step, True)
    value = chosen.get(f"{split}_accuracy")
    return Score(float("nan") if value is None else float(value), split if value is not None else "", applied,
                 chosen.get("step"), False)


def heldout_accuracy(history: Sequence[Mapping[str, Any]], rule: str) -> float:
    """The attribution model's held-out (test) accuracy at the point `rule` picks (NaN: none), no fallback."""
    chosen = point(history, rule)
    return float(chosen["test_accuracy"]) if chosen is not None else float("nan")


def choose(candidates: Mapping[Any, float]):
    """The candidate with the highest score (a finite one: NaN, nothing to score on, never wins); ties go to
    the candidate listed first (the defaults before a draw, the plainer arm before a combined one). None when
    no candidate has a score. The one "pick the best": the hyper-parameter search and the arm choice use it."""
    best = ranked(candidates, 1)
    return best[0] if best else None


def ranked(candidates: Mapping[Any, float], k: int | None = None) -> list:
    """The `k` best candidates (all: None), best first, by `choose`'s order: the highest finite score first, ties
    to the candidate listed first; a candidate without a score (NaN) is never ranked."""
    scored = [(name, value) for name, value in candidates.items() if value == value and value > -math.inf]
    order = sorted(range(len(scored)), key=lambda i: (-scored[i][1], i))  # stable: ties keep the listed order
    return [scored[i][0] for i in order][:k]
