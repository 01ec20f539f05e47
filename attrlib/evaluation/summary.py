"""The numbers of each technique over its runs (held-out rotations x seeds), from run folders (metrics.json,
predictions.csv), and every comparison paired (`stats.paired_comparison`).

    paired_predictions    held-out labels of several seeds of one rotation, aligned by image
    technique_summary     one technique's numbers: seed 002's averages, intervals over rotations, seeds, images
    summary_table         seed 002 §3.5 over techniques: accuracy with its interval, the paired difference vs
                          the baseline with its interval and verdict, gap closed vs each reference with its
                          interval, and the per-technique diagnostics
    rotation_table        the same comparisons per held-out rotation
    within_model_table    every arm against its own model: gap closed between that model's biased and unbiased
                          ERM, and the difference to the unbiased one, each with rotations fixed and random
    training_units        which rotations are one training (a crossed pair): counted once over rotations
    recorded_selection    the checkpoint-selection rule a technique's runs record (the tables' `selection`)

`attrlib.reporting.format_summary` writes the summary table's cells as text.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import records, selection as selection_rules
from ..errors import DataError
from ..rotation import Rotation
from ..runfolder import generators_of, heldout_split, load_predictions
from .metrics import MACRO_CONVENTION, calibration_error, class_labels, floors, per_generator_auc, split_metrics
from .stats import (CONVENTION, ROTATION_CONVENTION, aggregate_over_seeds, hierarchical_bootstrap,
                    paired_comparison, rotation_bootstrap)

# what each checkpoint-selection rule a run records means (metrics.json `selection.rule`; runs made before the
# engine scored checkpoints used the last epoch): `attrlib.selection.MEANING`


def paired_predictions(run_dirs: Sequence[str | os.PathLike], generators: Sequence[str] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Held-out (y_true (N,), y_pred (S, N), generators) of several seeds of one technique and one held-out
    rotation, aligned by path."""
    frames = [load_predictions(d, heldout_split(d)) for d in run_dirs]
    if not frames:
        raise ValueError("paired_predictions needs at least one run folder")
    generators = list(generators or generators_of(frames[0]))
    first = frames[0].set_index("path")
    preds = []
    for d, f in zip(run_dirs, frames):
        f = f.set_index("path")
        if set(f.index) != set(first.index):
            raise DataError(f"{d}: its held-out images differ from those of {run_dirs[0]}; pair seeds of one "
                            "technique trained on the same data and held-out subclass (group runs by rotation)")
        preds.append(class_labels(f.loc[first.index].reset_index(), generators, str(d))[1])
    y_true = class_labels(first.reset_index(), generators, str(run_dirs[0]))[0]
    return y_true, np.stack(preds), generators


def _by_rotation(run_dirs: Sequence[str | os.PathLike]) -> dict[str, list]:
    return records.collect(list(run_dirs)).folders_by_rotation()


def technique_summary(run_dirs: Sequence[str | os.PathLike], n_boot: int = 1000, alpha: float = 0.05,
                      seed: int = 0) -> dict:
    """The numbers of one technique over its runs (seeds, and held-out rotations: config.json's `heldout`).

    Per run, on its held-out split: seed 002's macro averages (over the generators present, MACRO_CONVENTION),
    accuracy, balanced accuracy (mean recall over the generators present) and the floors beside it (`floors`:
    the test set's majority class, the training prior's most frequent generator; accuracy and balanced), val accuracy, shortcut gap, worst-generator recall, ECE, macro one-vs-rest AUC; each averaged
    over the run's rotations per seed, then mean and sample std over seeds. Accuracy and macro F1 also get
    the hierarchical bootstrap interval (`stats.CONVENTION`): `accuracy` is its estimate, the mean over
    rotations of the mean over seeds.
    """
    if not len(run_dirs):
        raise ValueError("technique_summary needs at least one run folder")
    recs = records.collect(list(run_dirs))
    metrics = [r.metrics for r in recs]
    per_run, worst = [], []
    for d, r, m in zip(run_dirs, recs, metrics):
        pred = load_predictions(d, m["heldout"]["split"])
        gens = generators_of(pred)
        y_true, y_pred = class_labels(pred, gens, str(d))
        held = split_metrics(y_true, y_pred, gens)  # recomputed: old metrics.json averaged over absent generators
        recalls = {g: v["recall"] for g, v in held["per_generator"].items() if v["support"] > 0}
        worst_g = min(recalls, key=recalls.get)  # worst_generator_recall's choice, without a second report
        worst_r = recalls[worst_g]
        worst.append(worst_g)
        val = m.get("val", {}).get("accuracy", np.nan)
        floor = floors(y_true, gens, m.get("train_prior"))
        per_run.append({"seed": r.seed, "avg_precision": held["macro_precision"],
                        "avg_recall": held["macro_recall"], "avg_f1": held["macro_f1"], "accuracy": held["accuracy"],
                        "balanced_accuracy": held["balanced_accuracy"],
                        "majority_accuracy": floor["majority"]["accuracy"],
                        "majority_balanced_accuracy": floor["majority"]["balanced_accuracy"],
                        "prior_accuracy": floor.get("prior", {}).get("accuracy", np.nan),
                        "prior_balanced_accuracy": floor.get("prior", {}).get("balanced_accuracy", np.nan),
                        "val_accuracy": val, "shortcut_gap": val - held["accuracy"],
                        "worst_recall": worst_r, "ece": calibration_error(pred, gens),
                        "auc": float(np.nanmean(per_generator_auc(pred, gens)))})
    # per seed: the mean over its rotations; then mean and std over seeds
    per_seed = pd.DataFrame(per_run).groupby("seed").mean()
    agg = aggregate_over_seeds(per_seed.to_dict("records"))
    rotations = _by_rotation(run_dirs)
    inputs, n_classes = {}, 0
    for rotation, dirs in rotations.items():
        y_true, y_pred, gens = paired_predictions(dirs)
        inputs[rotation] = (y_true, y_pred)
        n_classes = max(n_classes, len(gens))  # each rotation indexes its own generators (one may run without some)
    _, acc_ci = hierarchical_bootstrap(inputs, "accuracy", n_boot=n_boot, alpha=alpha, seed=seed)
    _, f1_ci = hierarchical_bootstrap(inputs, "macro_f1", n_classes=n_classes, n_boot=n_boot, alpha=alpha, seed=seed)
    out = {k: float(agg.loc[k, "mean"]) for k in agg.index}
    out.update({f"{k}_std": float(agg.loc[k, "std"])
                for k in ("avg_precision", "avg_recall", "avg_f1", "accuracy", "balanced_accuracy")})
    out.update(accuracy=acc_ci.estimate, accuracy_low=acc_ci.low, accuracy_high=acc_ci.high,
               f1_low=f1_ci.low, f1_high=f1_ci.high,
               worst_generator=max(sorted(set(worst)), key=worst.count), heldout_split=metrics[0]["heldout"]["split"],
               seeds=len(per_seed), rotations=len(rotations),
               uses_target_data=bool(metrics[0].get("uses_target_data", False)))
    return out


def _per_rotation_accuracy(run_dirs, n_boot, alpha, seed) -> pd.DataFrame:
    inputs = {r: paired_predictions(dirs)[:2] for r, dirs in _by_rotation(run_dirs).items()}
    return hierarchical_bootstrap(inputs, "accuracy", n_boot=n_boot, alpha=alpha, seed=seed)[0]


# --------------------------------------------------------------------------------------------- comparisons
def _references(oracle) -> dict[str, object]:
    """label -> reference (None: asked for, none exists); no reference at all: {}."""
    if isinstance(oracle, Mapping):
        return dict(oracle)
    return {} if oracle is None else {"": oracle}


def _reference_runs(runs, ref, label: str):
    """(run folders | a number | None, why not) of one reference."""
    if ref is None:
        return None, ("no oracle given (train the baseline on the unbiased benchmark and pass its runs; the user's "
                      "own data has no unbiased variant)" if label == "oracle" else f"no {label} runs given")
    if isinstance(ref, str):
        if ref not in runs:
            raise DataError(f"reference {ref!r} is not among the techniques {list(runs)}; pass its run folders or its "
                            "accuracy instead")
        return list(runs[ref]), ""
    if isinstance(ref, (int, float)):
        return float(ref), ""
    ref = list(ref)
    return (ref, "") if ref else (None, f"no {label} runs given")


def _comparison_split(technique_split: str, reference, baseline_split: str) -> str:
    """The split a technique, the baseline and a reference are all scored on: the reference's held-out split
    where it is not the baseline's (fine_tuning: ft_test, the part of the held-out subclass it did not train
    on), else the technique's own held-out split."""
    if isinstance(reference, list):
        ref_split = heldout_split(reference[0])
        if ref_split != baseline_split:
            return ref_split
    return technique_split


def _compare_all(runs, baseline, oracle, n_boot, alpha, seed):
    """Every technique's summary, its comparison with the baseline and with each reference."""
    out = {}
    references = _references(oracle)
    base_dirs = list(runs[baseline]) if baseline in runs else None
    base_split = heldout_split(base_dirs[0]) if base_dirs else "test"
    resolved = {label: _reference_runs(runs, ref, label or "oracle") for label, ref in references.items()}
    for name, dirs in runs.items():
        dirs = list(dirs)
        entry = {"summary": technique_summary(dirs, n_boot=n_boot, alpha=alpha, seed=seed),
                 "accuracy": _per_rotation_accuracy(dirs, n_boot, alpha, seed), "difference": None, "refs": {},
                 "notes": []}
        t_split = entry["summary"]["heldout_split"]
        if base_dirs is None:
            entry["notes"].append(f"no baseline: {baseline!r} is not among the techniques {list(runs)}")
        else:
            entry["difference"] = paired_comparison(dirs, base_dirs, None, split=t_split, n_boot=n_boot,
                                                    alpha=alpha, seed=seed, names=(name, baseline))
            entry["notes"] += entry["difference"].notes
            if t_split != base_split:
                entry["notes"].append(f"scored on {t_split}, not on the baseline's {base_split}; its difference vs "
                                      f"the baseline is on {t_split} (the baseline scored on the same images)")
        for label, (ref, why) in resolved.items():
            tag = f"vs {label}: " if label else ""
            if base_dirs is None:
                entry["refs"][label] = None
                continue
            if ref is None:
                entry["refs"][label] = None
                entry["notes"].append(tag + why)
                continue
            split = _comparison_split(t_split, ref, base_split)
            comp = paired_comparison(dirs, base_dirs, ref, split=split, n_boot=n_boot, alpha=alpha, seed=seed,
                                     names=(name, baseline))
            entry["refs"][label] = comp
            entry["notes"] += [tag + n for n in comp.notes if "oracle" in n or "gap closed" in n]
        out[name] = entry
    return out, resolved


def recorded_selection(run_dirs: Sequence[str | os.PathLike]) -> str:
    """The checkpoint-selection rule the runs' predictions come from, as their metrics.json record it
    (`selection.rule`; "last" for runs made before selection existed); several: joined with "/"."""
    rules = []
    for r in records.collect(list(run_dirs)):
        chosen = r.metrics.get("selection")
        rules.append(chosen.get("rule", "last") if isinstance(chosen, Mapping) else str(chosen or "last"))
    return "/".join(dict.fromkeys(rules))


def _selections(runs, selection: str | None) -> list[str]:
    return [recorded_selection(dirs) if selection is None else selection for dirs in runs.values()]


def _selection_text(selections: Sequence[str]) -> str:
    names = list(dict.fromkeys(selections))
    if len(names) > 1:
        return "Checkpoint selection rules differ between techniques: see the selection column."
    meaning = selection_rules.MEANING.get(names[0], "")
    return f"Checkpoint selection rule: {names[0]}" + (f" ({meaning})" if meaning else "") + "."


def summary_table(runs: Mapping[str, Sequence[str | os.PathLike]], baseline: str = "baseline",
                  oracle: str | float | Sequence[str | os.PathLike] | Mapping | None = None, n_boot: int = 1000,
                  alpha: float = 0.05, seed: int = 0, probe: pd.DataFrame | None = None,
                  reliance: pd.DataFrame | None = None, selection: str | None = None) -> pd.DataFrame:
    """Seed 002 §3.5 for our study: one row per technique (runs: name -> run folders of its seeds, over one or
    several held-out rotations).

    Columns: held-out accuracy (mean over rotations of the mean over seeds, `accuracy_std` the sample std over
    seeds, `accuracy_low/high` its hierarchical bootstrap interval: `stats.CONVENTION`), balanced accuracy (the
    headline on an imbalanced real test set; `balanced_accuracy_std`) with its floors (`majority_accuracy`,
    `majority_balanced_accuracy`, `prior_accuracy`, `prior_balanced_accuracy`: `metrics.floors`), average precision,
    recall and F1 (macro over the generators present, MACRO_CONVENTION; F1 with its interval), `difference`
    = technique - `runs[baseline]` paired by (rotation, seed, image) with `difference_low/high` and `verdict`
    ("<technique> beats <baseline>" only where the interval excludes 0, else "not distinguishable"), gap
    closed = difference / (reference - baseline) per bootstrap replicate with `gap_closed[_<label>]_low/high`,
    val accuracy and the shortcut gap, worst-generator recall, ECE, macro AUC, the held-out split, seeds,
    rotations, the target-data flag, `selection` (the checkpoint rule the runs' predictions come from: None,
    what each technique's runs record, `recorded_selection`; a name, the caller's word for it, e.g. for
    predictions re-selected after the fact) and a note.

    oracle: a key of `runs`, run folders (the baseline trained on the unbiased benchmark: paired by image when
    its test images are identical to the baseline's, else by rotation and seed, and the note says so), an
    accuracy, or a mapping label -> one of those (None: no such reference): a column `gap_closed_<label>` per
    reference. A reference whose held-out split is not the baseline's (fine_tuning: ft_test) scores every
    technique, the baseline and itself on that split. oracle=None: no gap-closed column (the caption says why).

    probe: `attrlib.inspection.probe_table` (adds probe accuracy, its std, its run count and chance); reliance:
    `attrlib.inspection.content_reliance_table`. `table.attrs`: caption, alpha, n_boot, selection, the
    baseline's and each reference's accuracy (`<label>_accuracy`, on the split the reference is compared on).
    `attrlib.reporting.format_summary` writes the cells as text.
    """
    compared, resolved = _compare_all(runs, baseline, oracle, n_boot, alpha, seed)
    table = pd.DataFrame.from_dict({name: e["summary"] for name, e in compared.items()}, orient="index")
    table.index.name = "arm"
    for field in ("difference", "difference_low", "difference_high", "verdict"):
        table[field] = [np.nan if e["difference"] is None else e["difference"].overall[field]
                        for e in compared.values()]
    if baseline in table.index:
        table.loc[baseline, "verdict"] = "(the baseline)"
    for label in resolved:
        column = "gap_closed" + (f"_{label}" if label else "")
        for suffix in ("", "_low", "_high"):
            table[column + suffix] = [np.nan if e["refs"].get(label) is None
                                      else e["refs"][label].overall[f"gap_closed{suffix}"] for e in compared.values()]
        ref, _ = resolved[label]
        attr = f"{label or 'oracle'}_accuracy"
        base_entry = compared.get(baseline, {}).get("refs", {}).get(label)
        table.attrs[attr] = (float("nan") if base_entry is None else float(base_entry.overall["oracle_accuracy"]))
        if base_entry is not None:
            table.attrs[f"{label or 'oracle'}_split"] = base_entry.overall["split"]
    table.attrs["baseline_accuracy"] = float(table.loc[baseline, "accuracy"]) if baseline in table.index else np.nan
    _add_rotations_random(table, runs, compared, resolved, alpha, seed)
    table["selection"] = selections = _selections(runs, selection)
    table["note"] = ["; ".join(dict.fromkeys(e["notes"])) for e in compared.values()]
    joins = ((probe, {"probe_accuracy": "probe_accuracy", "probe_std": "probe_std", "chance": "probe_chance",
                      "seeds": "probe_runs"}),
             (reliance, {"share_in_mask": "reliance", "share_std": "reliance_std", "mask_area": "mask_area",
                         "seeds": "reliance_runs"}))
    for extra, columns in joins:
        for source, column in ({} if extra is None else columns).items():
            if column.endswith("_runs") and source not in extra:  # a table without its run count
                continue
            table[column] = extra[source].reindex(table.index)
    table.attrs.update(alpha=alpha, n_boot=n_boot, selection="/".join(dict.fromkeys(selections)),
                       caption=_caption(table, resolved, baseline, alpha, n_boot, selections))
    return table


def _add_rotations_random(table, runs, compared, resolved, alpha, seed) -> None:
    """Beside each paired interval, the one with the rotations random (`stats.rotation_bootstrap`: independent
    trainings resampled, a crossed pair once; NaN with one): `difference_rot_low/high`,
    `gap_closed[_<label>]_rot_low/high`, and `units`, the independent trainings."""
    units = {name: training_units(list(runs[name])) for name in compared}
    table["units"] = [len(set(units[name].values())) for name in compared]
    columns = {"difference": lambda e: e["difference"]}
    for label in resolved:
        columns["gap_closed" + (f"_{label}" if label else "")] = lambda e, label=label: e["refs"].get(label)
    for column, comparison in columns.items():
        stat = "difference" if column == "difference" else "gap_closed"
        both = [None if comparison(e) is None else rotation_bootstrap(comparison(e), units[name], alpha, seed)
                for name, e in compared.items()]
        for suffix in ("_rot_low", "_rot_high"):
            table[column + suffix] = [np.nan if b is None else b[stat + suffix] for b in both]


def _caption(table, resolved, baseline, alpha, n_boot, selections) -> str:
    seeds = "/".join(map(str, sorted(set(table["seeds"]))))
    rotations = "/".join(map(str, sorted(set(table["rotations"]))))
    level = f"{100 * (1 - alpha):.0f}%"
    parts = [f"Held-out accuracy: mean over {rotations} held-out rotation(s) of the mean ± std over {seeds} seed(s) "
             f"(sample std, ddof=1; n/a for a technique with one seed: one value has no spread); {level} intervals "
             f"by {CONVENTION} ({n_boot} resamples).",
             f"Difference = technique - {baseline}, paired by rotation, seed and image; a technique beats the "
             "baseline only where the interval of the difference excludes 0, else \"not distinguishable\". Beside "
             f"it, the interval with the rotations random ({ROTATION_CONVENTION})."]
    if resolved:
        parts.append("Gap closed = (technique - baseline) / (reference - baseline), the ratio of the mean paired "
                     "differences per bootstrap replicate.")
        for label, (ref, _) in resolved.items():
            name = label or "oracle"
            if name == "oracle":
                parts.append("Oracle: the baseline trained on the unbiased variant, scored on the same test images "
                             "where they are identical, else paired by rotation and seed (see the note).")
            elif isinstance(ref, list) and table.attrs.get(f"{name}_split", "test") != "test":
                parts.append(f"vs {name}: every technique, the baseline and {name} scored on "
                             f"{table.attrs[f'{name}_split']} (the images {name} did not train on).")
    else:
        parts.append("Gap closed needs an oracle (the baseline trained on the unbiased benchmark): see notebook 10.")
    parts.append(MACRO_CONVENTION[0].upper() + MACRO_CONVENTION[1:] + ".")
    parts.append(_selection_text(selections))
    return " ".join(parts)


def rotation_table(runs: Mapping[str, Sequence[str | os.PathLike]], baseline: str = "baseline",
                   oracle: str | float | Sequence[str | os.PathLike] | Mapping | None = None, n_boot: int = 1000,
                   alpha: float = 0.05, seed: int = 0, selection: str | None = None) -> pd.DataFrame:
    """`summary_table`'s comparisons per held-out rotation: one row per (technique, rotation) with seeds,
    images, accuracy and its interval (over that rotation's seeds and images), the paired difference vs the
    baseline with its interval and verdict, and gap closed vs each reference with its interval. Same
    arguments and conventions as `summary_table`; `attrs["caption"]` says them."""
    compared, resolved = _compare_all(runs, baseline, oracle, n_boot, alpha, seed)
    rows, selections = [], dict(zip(runs, _selections(runs, selection)))
    for name, e in compared.items():
        acc = e["accuracy"]
        for rotation in acc.index:
            row = {"arm": name, "rotation": rotation, "seeds": int(acc.loc[rotation, "seeds"]),
                   "images": int(acc.loc[rotation, "images"]), "accuracy": acc.loc[rotation, "estimate"],
                   "accuracy_low": acc.loc[rotation, "low"], "accuracy_high": acc.loc[rotation, "high"]}
            diff = e["difference"]
            for field in ("difference", "difference_low", "difference_high", "verdict"):
                row[field] = (diff.per_rotation.loc[rotation, field]
                              if diff is not None and rotation in diff.per_rotation.index else np.nan)
            if name == baseline:
                row["verdict"] = "(the baseline)"
            for label in resolved:
                comp = e["refs"].get(label)
                column = "gap_closed" + (f"_{label}" if label else "")
                for suffix in ("", "_low", "_high"):
                    row[column + suffix] = (comp.per_rotation.loc[rotation, f"gap_closed{suffix}"]
                                            if comp is not None and rotation in comp.per_rotation.index else np.nan)
            row["selection"] = selections[name]
            rows.append(row)
    table = pd.DataFrame(rows).set_index(["arm", "rotation"])
    level = f"{100 * (1 - alpha):.0f}%"
    table.attrs.update(alpha=alpha, n_boot=n_boot, selection="/".join(dict.fromkeys(selections.values())), caption=(
        f"Per held-out rotation: accuracy (mean over seeds) with its {level} interval over seeds and images; the "
        f"difference vs {baseline} and gap closed paired as in the summary table ({CONVENTION}; {n_boot} resamples). "
        + _selection_text(list(selections.values()))))
    return table



def training_units(run_dirs: Sequence[str | os.PathLike]) -> dict[str, str]:
    """rotation -> the subclasses its runs leave out of training (held out and validation subclass, metrics.json's
    `val_subclass`), sorted: two rotations with the same key train the same model (a crossed pair), so a
    bootstrap over rotations counts them once (`stats.rotation_bootstrap`)."""
    out: dict[str, str] = {}
    for r in records.collect(run_dirs):
        val = r.val_subclass
        left_out = set(r.rotation) | ({val} if val not in (None, "", "auto") else set())
        out[r.rotation.key] = Rotation(sorted(left_out)).key  # all it leaves out, as one key
    return out


WITHIN_MODEL_CAPTION = (
    "Gap closed within the arm's own model M (its front end and backbone): (arm - ERM_M biased) / (ERM_M unbiased - "
    "ERM_M biased), ERM_M the same model trained by plain ERM on the biased benchmark and on its unbiased twin; "
    "0 % is the model's own biased accuracy, 100 % its accuracy without the bias, above 100 % means the arm beats "
    "its own model trained without the bias. `vs oracle_M` = arm - ERM_M unbiased, paired. Gain over the compact "
    "model = (arm - compact baseline) / (compact oracle - compact baseline): above 100 % means only that the arm "
    "beats the compact model trained without the bias, a weaker reference (a better front end), not that more than "
    "all of a bias was removed.")
# on a folder without an unbiased twin (a user's), each model's reference is its target-data reference instead
_WITHIN_MODEL_TARGET_CAPTION = (
    "Gap closed within the arm's own model M (its front end and backbone): (arm - ERM_M biased) / (ERM_M with target "
    "data - ERM_M biased), ERM_M the same model trained by plain ERM on the biased training data and, as its "
    "reference, with the held-out subclass (cross-fitted: each held-out image scored by a fold model that never saw "
    "it; the data has no unbiased twin); 0 % is the model's own biased accuracy, 100 % its accuracy when trained on "
    "the target subclass, above 100 % means the arm beats that. `vs reference_M` = arm - ERM_M with target data, "
    "paired.")
# what a within-model table's references are -> its caption
WITHIN_MODEL_CAPTIONS = {"oracle": WITHIN_MODEL_CAPTION, "target_reference": _WITHIN_MODEL_TARGET_CAPTION}


def within_model_table(runs: Mapping[str, Sequence[str | os.PathLike]], models: Mapping[str, str],
                       oracles: Mapping[str, Sequence[str | os.PathLike]], baseline: str = "baseline",
                       compact_oracle: Sequence[str | os.PathLike] | None = None, n_boot: int = 1000,
                       alpha: float = 0.05, seed: int = 0, reference: str = "oracle") -> pd.DataFrame:
    """One row per arm of `runs` whose model has runs and an oracle: the arm against its own model.

    reference: what `oracles` hold, "oracle" (each model's ERM on the unbiased twin) or "target_reference" (its
    cross-fitted ERM with the held-out subclass: a folder without an unbiased twin); the caption and
    `attrs["reference"]` say which (the columns keep their names).

    models: arm -> the name (a key of `runs` and of `oracles`) of its model's plain ERM on the biased data (an
    ERM arm is its own model); oracles: model name -> that model's ERM runs on the unbiased twin. Columns:
    model, accuracy, model_accuracy (ERM_M biased), model_oracle_accuracy (ERM_M unbiased), gap_closed_within
    and vs_model_oracle (arm - ERM_M unbiased), and with `compact_oracle` (the `baseline`'s ERM on the unbiased
    twin) gain_over_compact; each with `_low/_high` (rotations fixed strata, CONVENTION) and `_rot_low/_rot_high`
    (rotations random, a crossed pair once: ROTATION_CONVENTION); rotations, units (independent trainings),
    seeds and a note. `attrs["caption"]` says what above 100 % means.
    """
    if reference not in WITHIN_MODEL_CAPTIONS:
        raise ValueError(f"reference {reference!r}; valid: {', '.join(WITHIN_MODEL_CAPTIONS)}")
    rows, notes = {}, {}
    fields = {"gap_closed": "gap_closed_within", "vs_reference": "vs_model_oracle"}
    for arm, dirs in runs.items():
        model = models.get(arm)
        if model is None or model not in runs or not oracles.get(model):
            continue
        dirs = list(dirs)
        units = training_units(dirs)
        comp = paired_comparison(dirs, list(runs[model]), list(oracles[model]), n_boot=n_boot, alpha=alpha,
                                 seed=seed, names=(arm, model))
        both = rotation_bootstrap(comp, units, alpha=alpha, seed=seed)
        row = {"model": model, "accuracy": both["accuracy"], "model_accuracy": both["baseline_accuracy"],
               "model_oracle_accuracy": both["oracle_accuracy"], "rotations": int(both["rotations"]),
               "units": int(both["units"]), "seeds": int(comp.overall["seeds"])}
        for source, name in fields.items():
            for suffix in ("", "_low", "_high", "_rot_low", "_rot_high"):
                row[name + suffix] = both[source + suffix]
        arm_notes = list(comp.notes)
        if compact_oracle and baseline in runs:
            compact = rotation_bootstrap(paired_comparison(dirs, list(runs[baseline]), list(compact_oracle),
                                                           n_boot=n_boot, alpha=alpha, seed=seed,
                                                           names=(arm, baseline)), units, alpha=alpha, seed=seed)
            for suffix in ("", "_low", "_high", "_rot_low", "_rot_high"):
                row["gain_over_compact" + suffix] = compact["gap_closed" + suffix]
        rows[arm] = row
        notes[arm] = "; ".join(dict.fromkeys(arm_notes))
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "arm"
    table["note"] = pd.Series(notes, dtype=object)  # also on an empty table (a user's folder: no oracle, no row)
    level = f"{100 * (1 - alpha):.0f}%"
    table.attrs.update(alpha=alpha, n_boot=n_boot, reference=reference, caption=(
        WITHIN_MODEL_CAPTIONS[reference] + f" Two {level} intervals each: rotations fixed ({CONVENTION}) and "
        f"rotations random ({ROTATION_CONVENTION}); {n_boot} resamples."))
    return table


def _direction(row: pd.Series) -> str:
    low, high = row.get("difference_low", np.nan), row.get("difference_high", np.nan)
    if not (np.isfinite(low) and np.isfinite(high)):
        return "n/a"
    return "better" if low > 0 else "worse" if high < 0 else "not distinguishable"


def conclusions_agree(first: pd.DataFrame, second: pd.DataFrame, labels: tuple[str, str] = ("first", "second"),
                      columns: Sequence[str] = ("accuracy", "difference", "gap_closed_oracle")) -> pd.DataFrame:
    """Two `summary_table`s of the same techniques on two data configurations side by side: each technique's
    verdict against the baseline in each (better / worse / not distinguishable, read off the paired interval)
    and whether they agree; a conclusion of the first that the second does not reproduce is flagged."""
    a, b = labels
    out = pd.DataFrame(index=[t for t in first.index if t in second.index])
    out.index.name = "arm"
    for column in columns:
        if column in first and column in second:
            out[f"{column} ({a})"] = first[column].reindex(out.index)
            out[f"{column} ({b})"] = second[column].reindex(out.index)
    out[f"vs baseline ({a})"] = [_direction(first.loc[t]) for t in out.index]
    out[f"vs baseline ({b})"] = [_direction(second.loc[t]) for t in out.index]
    out["agree"] = out[f"vs baseline ({a})"] == out[f"vs baseline ({b})"]
    out.attrs["caption"] = (f"Conclusions on two benchmark configurations: {a} (the study's) and {b} (another data "
                            "seed and instance spread, on which no knob was tuned). A technique's verdict against "
                            "the baseline is read off its paired 95 % interval; `agree` says whether the second "
                            f"configuration reproduces it ({int(out['agree'].sum())} of {len(out)} do).")
    return out
