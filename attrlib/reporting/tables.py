"""The study's tables as text: numbers from `attrlib.evaluation`, cells "mean ± std" over seeds (sample std,
ddof=1; "mean ± n/a" for one seed: one value has no spread, and "± 0.00" would claim one), said in each table's
`attrs["caption"]`. `save_table` writes them.

    seed_table          seed 002's per-generator table of one technique over its seeds
    format_summary      `evaluation.summary_table`'s numbers as text cells
    format_within_model `evaluation.within_model_table` as text: gap closed within each arm's own model
    format_robustness   `evaluation.robustness_table` as technique x perturbation "mean ± std" cells
    label_target_data   marks the techniques that train on target data in every table and figure
    swap_intervals      95 % intervals of `inspection.content_swap_table`'s follows_generator and follows_content
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import records
from ..evaluation import (MACRO_CONVENTION, aggregate_over_seeds, hierarchical_bootstrap, robustness_stats,
                          seed_style_report)
from ..runfolder import generators_of, load_predictions

METRICS = ("precision", "recall", "f1", "support")
TARGET_DATA_MARK = " (target data)"


ONE_SEED = "n/a for one seed"
# the gap closed against the compact baseline's unbiased oracle is named for what it is: an arm on another front
# end can beat that (weaker) reference, so above 100 % is "beats the compact model without its bias"
COMPACT_GAIN = "gain over the compact model, in units of its bias gap"
COMPACT_GAIN_MEANING = ("Gain over the compact model, in units of its bias gap = (technique - compact baseline) / "
                        "(compact oracle - compact baseline): above 100 % means the technique beats the compact model "
                        "trained without the bias (a weaker reference than its own model), not that more than all of "
                        "the bias was removed; the gap closed within each arm's own model is reported beside it.")


def _pm(mean: float, std: float, digits: int, n: float | None = None) -> str:
    """"mean ± std"; "mean ± n/a" when the std is over fewer than two values (n) or undefined (NaN)."""
    if pd.isna(mean):
        return ""
    if pd.isna(std) or (n is not None and not pd.isna(n) and n < 2):
        return f"{mean:.{digits}f} ± n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def seed_table(run_dirs: Sequence[str | os.PathLike], split: str = "heldout", fmt: bool = True,
               digits: int = 2) -> pd.DataFrame:
    """Seed 002's per-technique table over seeds: one row per generator (precision, recall, F1, support),
    then the macro average and the accuracy; cells "mean ± std" over the runs (sample std; "± n/a" for one run).

    split: "heldout" (each run's own held-out split) or a split name. fmt=False returns the numbers:
    columns (metric, "mean"|"std"). `table.attrs["caption"]` says so.
    """
    if not len(run_dirs):
        raise ValueError("seed_table needs at least one run folder")
    # runs of several held-out rotations: one block per rotation, over its own seeds
    rotations = records.collect(list(run_dirs)).folders_by_rotation()
    if len(rotations) > 1:
        blocks = {r: seed_table(dirs, split, fmt, digits) for r, dirs in rotations.items()}
        out = pd.concat(blocks, names=["held out"])
        out.attrs["caption"] = ("one block per held-out rotation; " + next(iter(blocks.values())).attrs["caption"]
                                .replace(f"over {len(next(iter(rotations.values())))} seed(s)", "over its seeds"))
        return out
    reports = []
    for d in run_dirs:
        rows = load_predictions(d, split)
        reports.append(seed_style_report(rows, generators_of(rows)))
    numbers = aggregate_over_seeds(reports)
    caption = (f"{split} split, mean ± std over {len(run_dirs)} seed(s) (sample std, ddof=1; {ONE_SEED}); the average row: "
               f"{MACRO_CONVENTION}")
    if not fmt:
        numbers.attrs["caption"] = caption
        return numbers
    out = pd.DataFrame(index=numbers.index, columns=list(METRICS), dtype=object)
    for r in numbers.index:
        for c in METRICS:
            mu, sd = numbers.loc[r, (c, "mean")], numbers.loc[r, (c, "std")]
            out.loc[r, c] = "" if np.isnan(mu) else f"{mu:.0f}" if c == "support" else _pm(mu, sd, digits, len(run_dirs))
    out.index.name = "generator"
    out.attrs["caption"] = caption
    return out


def label_target_data(runs: Mapping[str, Sequence[str | os.PathLike]]) -> dict[str, list]:
    """The same runs, with TARGET_DATA_MARK added to the name of every technique that trains on target data
    (its runs' metrics.json say `uses_target_data`), so every table and figure keyed by name marks it."""
    return {name + (TARGET_DATA_MARK if any(r.metrics.get("uses_target_data") for r in records.collect(list(dirs)))
                    else ""): list(dirs) for name, dirs in runs.items()}


def format_summary(table: pd.DataFrame, digits: int = 2, alpha: float | None = None) -> pd.DataFrame:
    """The numbers of `attrlib.evaluation.summary_table` (or `rotation_table`) as text cells: "0.49 ± 0.02"
    ("0.49 ± n/a" for a technique with one seed; probe and content reliance: one run),
    "[0.45, 0.53]", and the paired ones with their interval in the cell: "+0.04 [+0.01, +0.07]" (difference
    vs baseline), "17 % [5 %, 30 %]" (gap closed). alpha (the intervals' level; default the table's
    `attrs["alpha"]`, else 0.05) names the interval columns."""
    alpha = table.attrs.get("alpha", 0.05) if alpha is None else alpha
    level = f"{100 * (1 - alpha):.0f}%"

    def pm(means, stds, counts=None):
        counts = [None] * len(means) if counts is None else counts
        return [_pm(m, s, digits, n) for m, s, n in zip(means, stds, counts)]

    def ci(lo, hi):
        return "" if pd.isna(lo) else f"[{lo:.{digits}f}, {hi:.{digits}f}]"

    def num(v):
        return "" if pd.isna(v) else f"{v:.{digits}f}"

    def diff(v, lo, hi):
        return "" if pd.isna(v) else f"{v:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"

    def percent(v, lo, hi):
        if pd.isna(v):
            return ""
        bound = lambda b: "unbounded" if not np.isfinite(b) else f"{100 * b:.0f} %"  # noqa: E731
        return f"{100 * v:.0f} %" + ("" if pd.isna(lo) else f" [{bound(lo)}, {bound(hi)}]")

    seeds = table.get("seeds")  # the std's count: a technique with one seed has no spread to print
    out = pd.DataFrame(index=table.index)
    if "accuracy_std" in table:
        out["accuracy"] = pm(table.accuracy, table.accuracy_std, seeds)
    else:
        out["accuracy"] = table.accuracy.map(num)
    out[f"accuracy {level} CI"] = [ci(lo, hi) for lo, hi in zip(table.accuracy_low, table.accuracy_high)]
    if "balanced_accuracy" in table:
        out["balanced accuracy"] = pm(table.balanced_accuracy,
                                      table.get("balanced_accuracy_std", table.balanced_accuracy * np.nan), seeds)
        if "majority_accuracy" in table:   # the floors: a predictor naming one generator for every image
            out["majority floor (acc / bal)"] = [f"{num(a)} / {num(b)}" for a, b in
                                                 zip(table.majority_accuracy, table.majority_balanced_accuracy)]
            out["prior floor (acc / bal)"] = [f"{num(a)} / {num(b)}" if pd.notna(a) else "" for a, b in
                                              zip(table.prior_accuracy, table.prior_balanced_accuracy)]
    if "difference" in table:
        out["difference vs baseline"] = [diff(v, lo, hi) for v, lo, hi in
                                         zip(table.difference, table.difference_low, table.difference_high)]
        if "difference_rot_low" in table:  # the same difference, its interval with the rotations random
            out["vs baseline, rotations random"] = [
                "n/a (one training)" if pd.isna(lo) and pd.notna(v) else diff(v, lo, hi) for v, lo, hi in
                zip(table.difference, table.difference_rot_low, table.difference_rot_high)]
        out["verdict"] = table.verdict.fillna("")
    for column in [c for c in table.columns if (c == "gap_closed" or c.startswith("gap_closed_"))
                   and not c.endswith(("_low", "_high"))]:
        label = (COMPACT_GAIN if column == "gap_closed_oracle" else
                 "gap closed" + (f" vs {column[len('gap_closed_'):]}" if column != "gap_closed" else ""))
        low, high = table.get(f"{column}_low", table[column] * np.nan), table.get(f"{column}_high", table[column] * np.nan)
        out[label] = [percent(v, lo, hi) for v, lo, hi in zip(table[column], low, high)]
    if "avg_precision" in table:
        out["avg precision"] = pm(table.avg_precision, table.avg_precision_std, seeds)
        out["avg recall"] = pm(table.avg_recall, table.avg_recall_std, seeds)
        out["avg F1"] = pm(table.avg_f1, table.avg_f1_std, seeds)
        out[f"F1 {level} CI"] = [ci(lo, hi) for lo, hi in zip(table.f1_low, table.f1_high)]
        out["val accuracy"] = table.val_accuracy.map(num)
        out["shortcut gap"] = table.shortcut_gap.map(num)
        out["worst recall"] = table.worst_recall.map(num)
        out["worst generator"] = table.worst_generator
        out["ECE"] = table.ece.map(num)
        out["AUC"] = table.auc.map(num)
    if "probe_accuracy" in table:
        out["subclass probe"] = pm(table.probe_accuracy, table.probe_std, table.get("probe_runs"))
        out["probe chance"] = table.probe_chance.map(num)
    if "reliance" in table:
        out["CAM share in object"] = pm(table.reliance, table.reliance_std, table.get("reliance_runs"))
        out["object area"] = table.mask_area.map(num)
    for column, label in (("heldout_split", "held-out split"), ("rotations", "rotations"), ("seeds", "seeds"),
                          ("images", "images"), ("selection", "selection")):
        if column in table:
            out[label] = table[column]
    if "uses_target_data" in table:
        out["uses target data"] = table.uses_target_data.map({True: "yes", False: "no"})
    if "note" in table:
        out["note"] = table.note
    out.attrs.update({k: v for k, v in table.attrs.items() if not isinstance(v, pd.DataFrame)})
    if "gap_closed_oracle" in table and COMPACT_GAIN_MEANING not in out.attrs.get("caption", ""):
        out.attrs["caption"] = (out.attrs.get("caption", "") + " " + COMPACT_GAIN_MEANING).strip()
    return out


def _two_intervals(v: float, row: pd.Series, column: str, scale: float, fmt: str, undefined: str = "") -> str:
    """"v [fixed low, high] / [random low, high]" (rotations fixed strata, then random; n/a where undefined)."""
    if pd.isna(v):
        return undefined
    unit = " %" if scale == 100 else ""

    def pair(lo, hi):
        ok = np.isfinite(lo) and np.isfinite(hi)
        return f"[{scale * lo:{fmt}}{unit}, {scale * hi:{fmt}}{unit}]" if ok else "n/a"
    return (f"{scale * v:{fmt}}{unit} {pair(row[column + '_low'], row[column + '_high'])}"
            f" / {pair(row[column + '_rot_low'], row[column + '_rot_high'])}")


def format_within_model(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """`evaluation.within_model_table` as text: each number with its interval over rotations fixed, then over
    rotations random ("n/a" with a single independent training)."""
    out = pd.DataFrame(index=table.index)
    out.attrs.update({k: v for k, v in table.attrs.items() if not isinstance(v, pd.DataFrame)})
    if not len(table):  # no arm has its own model's oracle (a user's folder has no unbiased twin)
        out.attrs["caption"] = ("No arm has an oracle of its own model (data without an unbiased twin, such as a "
                                "user's folder): gap closed within a model is undefined here. "
                                + out.attrs.get("caption", ""))
        return out
    num = lambda v: "" if pd.isna(v) else f"{v:.{digits}f}"  # noqa: E731
    # the model's reference: its ERM on the unbiased twin, or (a folder without one) its ERM with target data
    ref, ref_name = (("unbiased", "oracle_M") if table.attrs.get("reference", "oracle") == "oracle"
                     else ("with target data", "reference_M"))
    out["model M"] = table["model"]
    out["accuracy"] = table["accuracy"].map(num)
    out[f"ERM_M biased / {ref}"] = [f"{num(a)} / {num(b)}" for a, b in
                                    zip(table["model_accuracy"], table["model_oracle_accuracy"])]
    out["gap closed within M [fixed] / [rotations random]"] = [
        _two_intervals(r["gap_closed_within"], r, "gap_closed_within", 100, ".0f",
                       f"undefined: ERM_M {ref} does not beat ERM_M biased") for _, r in table.iterrows()]
    out[f"arm - {ref_name} [fixed] / [rotations random]"] = [
        _two_intervals(r["vs_model_oracle"], r, "vs_model_oracle", 1, f"+.{digits}f") for _, r in table.iterrows()]
    if "gain_over_compact" in table:
        out[COMPACT_GAIN] = [_two_intervals(r["gain_over_compact"], r, "gain_over_compact", 100, ".0f",
                                            "undefined: the compact oracle does not beat the compact baseline")
                             for _, r in table.iterrows()]
    out["rotations (trainings)"] = [f"{int(r)} ({int(u)})" for r, u in zip(table["rotations"], table["units"])]
    out["seeds"] = table["seeds"]
    out.attrs.update({k: v for k, v in table.attrs.items() if not isinstance(v, pd.DataFrame)})
    return out


def format_robustness(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """technique x perturbation of `attrlib.evaluation.robustness_table`: "mean ± std" accuracy over seeds
    (sample std, ddof=1; "± n/a" for one seed)."""
    wide = robustness_stats(table)
    seeds = "/".join(str(int(n)) for n in sorted(set(wide["count"].to_numpy().ravel())))
    mean, std, count = wide["mean"], wide["std"].reindex_like(wide["mean"]), wide["count"].reindex_like(wide["mean"])
    out = pd.DataFrame([[_pm(m, s, digits, n) for m, s, n in zip(mean.loc[t], std.loc[t], count.loc[t])]
                        for t in mean.index], index=mean.index, columns=[str(c) for c in mean.columns])
    rotations = table["heldout"].nunique() if "heldout" in table else 1
    out.attrs["caption"] = (f"Held-out accuracy under post-processing, mean ± std over {seeds} run(s) ({rotations} "
                            f"held-out rotation(s) x seeds; sample std, ddof=1; n/a for one run); n = {int(table['n'].max())} images "
                            "per run at most.")
    return out


def stack_summaries(tables: Mapping[str, pd.DataFrame], level: str = "benchmark", digits: int = 2) -> pd.DataFrame:
    """Several `summary_table`s (label -> table, e.g. one per benchmark configuration) as one text table indexed
    by (label, technique), with the columns `format_summary` gives them all; the caption names each label's
    baseline and reference accuracies."""
    parts, notes = [], []
    for label, table in tables.items():
        text = format_summary(table, digits)
        text.index = pd.MultiIndex.from_product([[label], list(text.index)], names=[level, "arm"])
        parts.append(text)
        refs = [f"{k[:-len('_accuracy')]} {v:.3f}" for k, v in table.attrs.items()
                if k.endswith("_accuracy") and isinstance(v, float)]
        notes.append(f"{label}: " + ", ".join(refs))
    out = pd.concat(parts)
    # a column one configuration lacks (the realistic variant has no oracle: no gap closed) stays for the others
    out = out.fillna("")
    out = out[[c for c in out.columns if (out[c].astype(str) != "").any()]]
    out.attrs["caption"] = ("One row per benchmark configuration and technique, each compared with its own "
                            "baseline on the same images (paired), as in the ablation table. Accuracies: "
                            + "; ".join(notes) + ".")
    return out


def format_open_set(table: pd.DataFrame) -> pd.DataFrame:
    """`evaluation.open_set_table` for reading: one row per arm, rotation, left-out generator, seed and score,
    AUROC and OSCR as "estimate [low, high]", the accuracies at the threshold beside the closed-set ones."""
    def ci(prefix: str) -> pd.Series:
        return table.apply(lambda r: f"{r[prefix]:.3f} [{r[prefix + '_low']:.3f}, {r[prefix + '_high']:.3f}]", axis=1)

    out = table[["arm", "heldout", "unknown", "seed", "score"]].copy()
    out["AUROC"], out["OSCR"] = ci("auroc"), ci("oscr")
    for column in ("accuracy", "accuracy_at_threshold", "balanced_accuracy", "balanced_accuracy_at_threshold",
                   "unknown_flagged", "known_rejected"):
        if column in table:
            out[column] = table[column].round(3)
    out.attrs["caption"] = table.attrs.get("caption", "")
    return out.set_index(["arm", "heldout", "unknown", "seed", "score"])


def swap_intervals(swap: pd.DataFrame, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """`inspection.content_swap_table`'s table with the (1 - alpha) intervals of follows_generator and
    follows_content (generator_low / _high, content_low / _high), from the images of its `attrs["images"]` on
    conflict cells: `evaluation.hierarchical_bootstrap`, within each held-out rotation seeds, then clean images, each
    with all its renders (one clean image is rendered through every generator: its renders share their content and
    are resampled together); rotations fixed strata. The interval is around the mean over rotations of the seeds'
    shares, which is the table's mean over runs when every rotation has the same seeds. An arm without conflict
    images (trained where content and generator are independent) gets NaN. The caption says how the intervals were
    made; other attrs are kept."""
    images = swap.attrs.get("images")
    if images is None:
        raise ValueError("swap_intervals needs inspection.content_swap_table's table (its attrs['images'])")
    out = swap.copy()
    out.attrs = dict(swap.attrs)
    for column, name in (("follows_generator", "generator"), ("follows_content", "content")):
        low, high = {}, {}
        for arm, frame in images[images["conflict"].astype(bool)].groupby("arm", sort=False):
            per_rotation, clusters = {}, {}
            for heldout, rot in frame.groupby("heldout", sort=True):
                # seeds x images, the images every seed saw (the same renders for every run of a rotation)
                grid = rot.pivot_table(index="seed", columns=["subclass", "generator", "item"], values=column,
                                       aggfunc="first").dropna(axis=1)
                if grid.shape[1]:
                    per_rotation[heldout] = (np.ones(grid.shape[1], int), grid.to_numpy().astype(int))
                    clusters[heldout] = [f"{sub}/{item}" for sub, _, item in grid.columns]  # the clean image
            if per_rotation:
                interval = hierarchical_bootstrap(per_rotation, n_boot=n_boot, alpha=alpha, seed=seed,
                                                  clusters=clusters)[1]
                low[arm], high[arm] = interval.low, interval.high
        out[f"{name}_low"] = pd.Series(low, dtype=float).reindex(out.index)
        out[f"{name}_high"] = pd.Series(high, dtype=float).reindex(out.index)
    out.attrs["caption"] = (swap.attrs.get("caption", "") + f" Intervals (generator_low / _high, content_low / "
                            f"_high): {100 * (1 - alpha):.0f} % hierarchical bootstrap, {n_boot} resamples (within each "
                            "held-out rotation: seeds, then clean images with all their conflict renders, with "
                            "replacement; rotations fixed strata).")
    return out
