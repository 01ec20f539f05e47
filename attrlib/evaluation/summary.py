"""The numbers of each technique over its seeds, from run folders (metrics.json, predictions.csv).

    paired_predictions    held-out labels of several seeds, aligned by image (for the paired bootstrap)
    technique_summary     one technique's numbers: seed 002's averages, intervals, gap, ECE, AUC
    summary_table         seed 002 §3.5 over techniques, with intervals and the gap-closed column(s)

`attrlib.reporting.format_summary` writes the summary table's cells as text.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError
from .metrics import calibration_error, class_labels, per_generator_auc, shortcut_gap, worst_generator_recall
from ..runfolder import generators_of, heldout_split, load_metrics, load_predictions
from .stats import GapClosed, aggregate_over_seeds, bootstrap_ci, gap_closed


def paired_predictions(run_dirs: Sequence[str | os.PathLike], generators: Sequence[str] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Held-out (y_true (N,), y_pred (S, N), generators) of several seeds of one technique, aligned by path."""
    frames = [load_predictions(d, heldout_split(d)) for d in run_dirs]
    if not frames:
        raise ValueError("paired_predictions needs at least one run folder")
    generators = list(generators or generators_of(frames[0]))
    first = frames[0].set_index("path")
    preds = []
    for d, f in zip(run_dirs, frames):
        f = f.set_index("path")
        if set(f.index) != set(first.index):
            raise DataError(f"{d}: its held-out images differ from those of {run_dirs[0]}; bootstrap seeds of one "
                            "technique trained on the same data (same data folder and held-out subclass)")
        preds.append(class_labels(f.loc[first.index].reset_index(), generators, str(d))[1])
    y_true = class_labels(first.reset_index(), generators, str(run_dirs[0]))[0]
    return y_true, np.stack(preds), generators


def _mean_heldout_accuracy(run_dirs: Sequence[str | os.PathLike]) -> float:
    return float(np.mean([load_metrics(d)["heldout"]["accuracy"] for d in run_dirs]))


def technique_summary(run_dirs: Sequence[str | os.PathLike], n_boot: int = 1000, alpha: float = 0.05,
                      seed: int = 0) -> dict:
    """The numbers of one technique over its seeds: seed 002's averages (mean and std), bootstrap intervals of
    accuracy and macro F1, val accuracy, shortcut gap, worst-generator recall, ECE, macro one-vs-rest AUC."""
    if not len(run_dirs):
        raise ValueError("technique_summary needs at least one run folder")
    metrics = [load_metrics(d) for d in run_dirs]
    per_seed, worst = [], []
    for d, m in zip(run_dirs, metrics):
        pred = load_predictions(d, m["heldout"]["split"])
        gens = generators_of(pred)
        worst_g, worst_r = worst_generator_recall(pred, gens)
        worst.append(worst_g)
        per_seed.append({"avg_precision": m["heldout"]["macro_precision"], "avg_recall": m["heldout"]["macro_recall"],
                         "avg_f1": m["heldout"]["macro_f1"], "accuracy": m["heldout"]["accuracy"],
                         "val_accuracy": m.get("val", {}).get("accuracy", np.nan),
                         "shortcut_gap": shortcut_gap(m) if "val" in m else np.nan,
                         "worst_recall": worst_r, "ece": calibration_error(pred, gens),
                         "auc": float(np.nanmean(per_generator_auc(pred, gens)))})
    agg = aggregate_over_seeds(per_seed)
    y_true, y_pred, gens = paired_predictions(run_dirs)
    acc_ci = bootstrap_ci(y_true, y_pred, "accuracy", n_boot=n_boot, seed=seed, alpha=alpha)
    f1_ci = bootstrap_ci(y_true, y_pred, "macro_f1", n_boot=n_boot, seed=seed, alpha=alpha, n_classes=len(gens))
    out = {k: float(agg.loc[k, "mean"]) for k in agg.index}
    out.update({f"{k}_std": float(agg.loc[k, "std"]) for k in ("avg_precision", "avg_recall", "avg_f1", "accuracy")})
    out.update(accuracy_low=acc_ci.low, accuracy_high=acc_ci.high, f1_low=f1_ci.low, f1_high=f1_ci.high,
               worst_generator=max(set(worst), key=worst.count), heldout_split=metrics[0]["heldout"]["split"],
               seeds=len(run_dirs),
               uses_target_data=bool(metrics[0].get("uses_target_data", False)))
    return out


def summary_table(runs: Mapping[str, Sequence[str | os.PathLike]], baseline: str = "baseline",
                  oracle: str | float | Sequence[str | os.PathLike] | Mapping | None = None, n_boot: int = 1000,
                  alpha: float = 0.05, seed: int = 0, probe: pd.DataFrame | None = None,
                  reliance: pd.DataFrame | None = None) -> pd.DataFrame:
    """Seed 002 §3.5 for our study: one row per technique (runs: name -> run folders of its seeds).

    Columns: average precision, recall, F1 and accuracy on the held-out split (mean ± std over seeds, sample
    std), the bootstrap (1 - alpha) interval of accuracy and macro F1, val accuracy and the shortcut gap,
    worst-generator recall, ECE, macro AUC, gap closed, the held-out split, seeds, and the target-data flag.

    Gap closed is computed on seed-mean held-out accuracies against `runs[baseline]` and the oracle: a key of
    `runs` (seed 002 used fine-tuning), run folders (the baseline trained on the unbiased benchmark: scored
    on that benchmark's own held-out images), or an accuracy. With no oracle the column is NaN and the note
    says why (oracle=None: no gap-closed column at all, the caption says why); a technique scored on another
    split than the baseline gets a note too. `oracle` may also be a
    mapping label -> one of those (or None: no such reference, e.g. no unbiased variant of the user's data):
    one column `gap_closed_<label>` ("gap closed vs <label>") per reference.

    probe: `attrlib.inspection.probe_table` (adds probe accuracy, its std and chance); reliance:
    `attrlib.inspection.content_reliance_table` (adds the CAM share in the object mask, its std, the mask
    area). The baseline and oracle accuracies are in `table.attrs`, and `table.attrs["caption"]` says what the
    cells are; `attrlib.reporting.format_summary` writes the cells as text ("0.49 ± 0.02").
    """
    rows = {name: technique_summary(dirs, n_boot=n_boot, alpha=alpha, seed=seed) for name, dirs in runs.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "technique"
    # no reference at all (a technique notebook's own table): no gap-closed column, and the caption says why
    references = dict(oracle) if isinstance(oracle, Mapping) else {} if oracle is None else {"": oracle}
    notes = [[] for _ in table.index]
    for label, ref in references.items():
        acc_base, acc_ref, why = _gap_references(runs, baseline, ref, label or "oracle")
        gaps = [gap_closed(a, acc_base, acc_ref) if why == "" else GapClosed(float("nan"), why)
                for a in table["accuracy"]]
        table["gap_closed" + (f"_{label}" if label else "")] = [g.value for g in gaps]
        for n, g in zip(notes, gaps):
            if g.note:
                n.append(f"vs {label}: {g.note}" if label else g.note)
        table.attrs[f"{label or 'oracle'}_accuracy"] = acc_ref
        table.attrs["baseline_accuracy"] = acc_base
    table["note"] = ["; ".join(dict.fromkeys(n)) for n in notes]
    if baseline in table.index:  # fine-tuning is scored on ft_test, a fifth of the baseline's test split
        other = table["heldout_split"] != table.loc[baseline, "heldout_split"]
        table.loc[other, "note"] = [f"{n + '; ' if n else ''}scored on {s}, not on the baseline's "
                                    f"{table.loc[baseline, 'heldout_split']}"
                                    for n, s in zip(table.loc[other, "note"], table.loc[other, "heldout_split"])]
    joins = ((probe, {"probe_accuracy": "probe_accuracy", "probe_std": "probe_std", "chance": "probe_chance"}),
             (reliance, {"share_in_mask": "reliance", "share_std": "reliance_std", "mask_area": "mask_area"}))
    for extra, columns in joins:
        for source, column in ({} if extra is None else columns).items():
            table[column] = extra[source].reindex(table.index)
    seeds = sorted(set(table["seeds"]))
    table.attrs.update(alpha=alpha, n_boot=n_boot, caption=(
        f"Held-out subclass, mean ± std over {'/'.join(map(str, seeds))} seed(s) (sample std, ddof=1); "
        f"{100 * (1 - alpha):.0f}% percentile bootstrap intervals over images ({n_boot} resamples, seeds paired)."
        + ("" if references else " Gap closed needs an oracle (the baseline trained on the unbiased benchmark): "
           "see notebook 10.")))
    return table


def _gap_references(runs, baseline, oracle, label: str = "oracle") -> tuple[float, float, str]:
    if oracle is None:
        if label == "oracle":
            return np.nan, np.nan, ("no oracle given (train the baseline on the unbiased benchmark and pass its "
                                    "runs; the user's own data has no unbiased variant)")
        return np.nan, np.nan, f"no {label} runs given"
    if baseline not in runs:
        return np.nan, np.nan, f"no baseline: {baseline!r} is not among the techniques {list(runs)}"
    acc_base = _mean_heldout_accuracy(runs[baseline])
    if isinstance(oracle, str):
        if oracle not in runs:
            raise DataError(f"oracle {oracle!r} is not among the techniques {list(runs)}; pass its run folders "
                            "or its accuracy instead")
        acc_oracle = _mean_heldout_accuracy(runs[oracle])
    elif isinstance(oracle, (int, float)):
        acc_oracle = float(oracle)
    else:
        acc_oracle = _mean_heldout_accuracy(list(oracle))
    return acc_base, acc_oracle, ""
