"""The study's numbers, from predictions frames and run folders, with scikit-learn wherever it has the metric.

Per run (a predictions frame, i.e. rows of one split of a run's predictions.csv):
    seed_style_report     seed 002's per-generator table: precision, recall, F1, support, average, accuracy
    confusion             counts or row-normalised confusion matrix
    per_generator_auc     one-vs-rest ROC AUC of each generator's probability
    expected_calibration_error   top-label ECE, 15 equal-width bins (scikit-learn has none)
    llr_scores / llr_figure      seed 000 Figure 2: log(p_g / (1 - p_g)) for g's own images against the others'
Over runs:
    aggregate_over_seeds  mean, std (ddof=1; 0 for one seed) and n of metric dicts or frames
    bootstrap_ci          percentile interval of held-out accuracy or macro F1 (see its docstring for seeds)
    shortcut_gap, worst_generator_recall, gap_closed
    summary_table         seed 002 §3.5 over techniques, with intervals and the gap-closed column

Tables are written with `attrlib.reporting.save_table` (CSV, Markdown, LaTeX booktabs, atomically).
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, Mapping, NamedTuple, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score, roc_auc_score

from ..errors import DataError
from ..runfolder import check_prediction_frame, heldout_split, load_metrics, load_predictions

REPORT_COLUMNS = ("precision", "recall", "f1", "support")
ECE_BINS = 15
LLR_CLIP = 1e-6


# --------------------------------------------------------------------------------------------- per run
def _labels(frame: pd.DataFrame, generators: Sequence[str], where: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer class indices (position in `generators`) of the true and the predicted generator."""
    check_prediction_frame(frame, where=where)
    index = {g: i for i, g in enumerate(generators)}
    for column in ("generator", "pred"):
        unknown = sorted(set(frame[column]) - set(index))
        if unknown:
            raise DataError(f"{where}: column {column!r} holds {unknown}, which are not among the generators "
                            f"{list(generators)}; pass the generators the run was trained on")
    return frame["generator"].map(index).to_numpy(int), frame["pred"].map(index).to_numpy(int)


def _probs(frame: pd.DataFrame, generators: Sequence[str], where: str) -> np.ndarray:
    check_prediction_frame(frame, generators, where=where)
    return frame[[f"p_{g}" for g in generators]].to_numpy(float)


def split_metrics(y_true, y_pred, generators: Sequence[str]) -> dict:
    """Seed-style metrics with scikit-learn: accuracy, macro averages, per-generator P/R/F1/support, confusion."""
    labels = list(range(len(generators)))
    rep = classification_report(y_true, y_pred, labels=labels, target_names=list(generators), output_dict=True,
                                zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_precision": float(rep["macro avg"]["precision"]),
        "macro_recall": float(rep["macro avg"]["recall"]),
        "macro_f1": float(rep["macro avg"]["f1-score"]),
        "per_generator": {g: {"precision": float(rep[g]["precision"]), "recall": float(rep[g]["recall"]),
                              "f1": float(rep[g]["f1-score"]), "support": int(rep[g]["support"])}
                          for g in generators},
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def run_metrics(predictions: pd.DataFrame, generators: Sequence[str], heldout_split: str) -> dict:
    """metrics.json's numbers from a run's predictions: one `split_metrics` per split (in the frame's order)
    and `heldout`, the split the run is judged on."""
    out = {}
    for split, rows in predictions.groupby("split", sort=False):
        out[split] = split_metrics(*_labels(rows, generators, f"predictions of split {split!r}"), generators)
    if heldout_split not in out:
        raise DataError(f"the predictions hold no rows of the split {heldout_split!r} the run is judged on")
    out["heldout"] = {"split": heldout_split, **out[heldout_split]}
    return out


def seed_style_report(pred_frame: pd.DataFrame, generators: Sequence[str], split: str | None = None) -> pd.DataFrame:
    """Seed 002's table for one run: a row per generator (precision, recall, f1, support), then `average`
    (the macro average; support = all images) and `accuracy` (in the f1 column, as scikit-learn prints it).

    pred_frame: rows of predictions.csv (already one split, or pick one with `split`).
    """
    if split is not None:
        pred_frame = pred_frame[pred_frame["split"] == split]
    y_true, y_pred = _labels(pred_frame, generators, "seed_style_report")
    if not len(y_true):
        raise DataError(f"seed_style_report: no rows{f' of split {split!r}' if split else ''}; nothing to report")
    labels = list(range(len(generators)))
    rep = classification_report(y_true, y_pred, labels=labels, target_names=list(generators), output_dict=True,
                                zero_division=0)
    rows = {g: [rep[g]["precision"], rep[g]["recall"], rep[g]["f1-score"], rep[g]["support"]] for g in generators}
    macro = rep["macro avg"]
    rows["average"] = [macro["precision"], macro["recall"], macro["f1-score"], len(y_true)]
    rows["accuracy"] = [np.nan, np.nan, accuracy_score(y_true, y_pred), len(y_true)]
    out = pd.DataFrame.from_dict(rows, orient="index", columns=list(REPORT_COLUMNS)).astype(float)
    out["support"] = out["support"].astype(int)
    out.index.name = "generator"
    return out


def confusion(pred_frame: pd.DataFrame, generators: Sequence[str], normalize: str | None = None) -> pd.DataFrame:
    """Confusion matrix (rows true generator, columns predicted); normalize=None (counts) or "true" (rows sum
    to 1; a generator with no image gives a row of zeros)."""
    if normalize not in (None, "true"):
        raise ValueError(f"normalize={normalize!r}; valid choices: None (counts), 'true' (row-normalised)")
    y_true, y_pred = _labels(pred_frame, generators, "confusion")
    cm = confusion_matrix(y_true, y_pred, labels=list(range(len(generators))), normalize=normalize)
    return pd.DataFrame(cm, index=pd.Index(list(generators), name="true"),
                        columns=pd.Index(list(generators), name="predicted"))


def per_generator_auc(pred_frame: pd.DataFrame, generators: Sequence[str]) -> pd.Series:
    """One-vs-rest ROC AUC of p_g for "is generator g" per generator; NaN where the frame has only one class."""
    y_true, _ = _labels(pred_frame, generators, "per_generator_auc")
    probs = _probs(pred_frame, generators, "per_generator_auc")
    out = {}
    for i, g in enumerate(generators):
        positive = y_true == i
        out[g] = roc_auc_score(positive, probs[:, i]) if 0 < positive.sum() < len(positive) else np.nan
    return pd.Series(out, name="roc_auc", dtype=float)


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: sum over equal-width confidence bins (lo, hi] of |bin| / N * |accuracy - mean confidence|.

    y_true: (N,) class indices; probs: (N, K) probabilities. Confidence = max probability, prediction = argmax.
    """
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=float)
    if probs.ndim != 2 or len(probs) != len(y_true):
        raise ValueError(f"probs must be (N, K) with N = len(y_true) = {len(y_true)}; got {probs.shape}")
    if not len(y_true):
        return float("nan")
    conf, pred = probs.max(1), probs.argmax(1)
    correct = (pred == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        inside = bins == b
        ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(ece)


def calibration_error(pred_frame: pd.DataFrame, generators: Sequence[str], n_bins: int = ECE_BINS) -> float:
    """`expected_calibration_error` of a predictions frame."""
    y_true, _ = _labels(pred_frame, generators, "calibration_error")
    return expected_calibration_error(y_true, _probs(pred_frame, generators, "calibration_error"), n_bins)


def worst_generator_recall(pred_frame: pd.DataFrame, generators: Sequence[str]) -> tuple[str, float]:
    """(generator, recall) of the generator with the lowest recall (among those with images in the frame)."""
    report = seed_style_report(pred_frame, generators).loc[list(generators)]
    report = report[report["support"] > 0]
    g = report["recall"].idxmin()
    return g, float(report.loc[g, "recall"])


def shortcut_gap(metrics: Mapping) -> float:
    """In-distribution validation accuracy minus held-out accuracy, from a run's metrics.json dict: how much
    of what the model learnt was the subclass shortcut."""
    try:
        return float(metrics["val"]["accuracy"]) - float(metrics["heldout"]["accuracy"])
    except KeyError as err:
        raise DataError(f"metrics.json lacks {err}; the shortcut gap needs val.accuracy and heldout.accuracy") from None


# --------------------------------------------------------------------------------------------- LLR (seed 000)
def llr_scores(pred_frame: pd.DataFrame, generators: Sequence[str], clip: float = LLR_CLIP) -> pd.DataFrame:
    """Long table of log(p_g / (1 - p_g)) for every image and every generator g, p clipped to [clip, 1 - clip].

    Columns: path, generator (the image's true generator), scored (g), own (image is g's), llr.
    """
    probs = np.clip(_probs(pred_frame, generators, "llr_scores"), clip, 1.0 - clip)
    llr = np.log(probs) - np.log1p(-probs)
    true = pred_frame["generator"].to_numpy()
    parts = [pd.DataFrame({"path": pred_frame["path"].to_numpy(), "generator": true, "scored": g,
                           "own": true == g, "llr": llr[:, i]}) for i, g in enumerate(generators)]
    return pd.concat(parts, ignore_index=True)


def llr_figure(scores: pd.DataFrame, generators: Sequence[str], title: str = "", bins: int = 30, kde: bool = True,
               cols: int = 3) -> plt.Figure:
    """One panel per generator: density of its LLR score on its own images against the other generators' images.

    A good attributor separates the two around 0 (p = 0.5); seed 000's "happy box" is own images far right and
    others far left.
    """
    from scipy.stats import gaussian_kde

    rows = max(1, -(-len(generators) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    lo, hi = float(scores["llr"].min()), float(scores["llr"].max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    for ax, g in zip(axes.flat, generators):
        panel = scores[scores["scored"] == g]
        for own, colour, label in ((True, "C2", "own images"), (False, "C3", "other generators")):
            values = panel.loc[panel["own"] == own, "llr"].to_numpy()
            if not len(values):
                continue
            ax.hist(values, bins=edges, density=True, color=colour, alpha=0.45, label=f"{label} (n={len(values)})")
            if kde and len(values) > 1 and np.ptp(values) > 0:  # a KDE of constant values is singular
                grid = np.linspace(edges[0], edges[-1], 200)
                ax.plot(grid, gaussian_kde(values)(grid), color=colour, lw=1.2)
        ax.axvline(0.0, color="0.4", ls=":", lw=1)
        ax.set_title(g, fontsize=9)
        ax.set_xlabel("log(p / (1 - p))", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left", framealpha=0.6)
    for ax in list(axes.flat)[len(generators):]:
        ax.axis("off")
    fig.suptitle(title or "Per-generator LLR score charts (dotted: p = 0.5)", fontsize=10)
    fig.tight_layout()
    return fig


def runs_llr_figure(run_dirs: Sequence[str | os.PathLike], title: str = "", **kwargs) -> plt.Figure:
    """`llr_figure` of the held-out predictions of several seeds of one technique, pooled."""
    if not len(run_dirs):
        raise ValueError("runs_llr_figure needs at least one run folder")
    frame = pd.concat([load_predictions(d, heldout_split(d)) for d in run_dirs], ignore_index=True)
    generators = [c[2:] for c in frame.columns if c.startswith("p_")]
    return llr_figure(llr_scores(frame, generators), generators, title=title, **kwargs)


# --------------------------------------------------------------------------------------------- over seeds
def aggregate_over_seeds(items: Sequence[Mapping[str, float] | pd.DataFrame], ddof: int = 1) -> pd.DataFrame:
    """Mean, std and n over seeds.

    items: metric dicts (name -> number) -> a frame indexed by metric with columns mean, std, n; or frames of
    one shape (e.g. `seed_style_report`s) -> the frame with columns (column, "mean" | "std"). The std is the
    sample std (ddof=1); with one seed it is 0, not NaN.
    """
    if not len(items):
        raise ValueError("aggregate_over_seeds needs at least one run's metrics")
    if all(isinstance(t, pd.DataFrame) for t in items):
        first = items[0]
        for t in items[1:]:
            if t.shape != first.shape or not t.index.equals(first.index) or not t.columns.equals(first.columns):
                raise ValueError("aggregate_over_seeds: the frames differ in rows or columns; aggregate tables of "
                                 "the same generators and columns")
        stack = np.stack([t.to_numpy(float) for t in items])
        mean = pd.DataFrame(_mean(stack), index=first.index, columns=first.columns)
        std = pd.DataFrame(_std(stack, ddof), index=first.index, columns=first.columns)
        return pd.concat({"mean": mean, "std": std}, axis=1).swaplevel(axis=1)[list(first.columns)]
    frame = pd.DataFrame([dict(t) for t in items], dtype=float)
    values = frame.to_numpy(float)
    return pd.DataFrame({"mean": frame.mean().to_numpy(), "std": _std(values, ddof), "n": frame.count().to_numpy()},
                        index=pd.Index(frame.columns, name="metric"))


def _mean(stack: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # an all-NaN cell (e.g. accuracy's precision) stays NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stack, axis=0)


def _std(stack: np.ndarray, ddof: int) -> np.ndarray:
    if len(stack) <= ddof:
        return np.where(np.isnan(stack[0]), np.nan, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanstd(stack, axis=0, ddof=ddof)


class Interval(NamedTuple):
    estimate: float
    low: float
    high: float


def _metric_fn(metric: str | Callable, n_classes: int | None) -> Callable:
    if callable(metric):
        return metric
    if metric == "accuracy":
        return accuracy_score
    if metric == "macro_f1":
        labels = None if n_classes is None else list(range(n_classes))
        return lambda t, p: f1_score(t, p, labels=labels, average="macro", zero_division=0)
    raise ValueError(f"unknown metric {metric!r}; valid: 'accuracy', 'macro_f1' or a callable(y_true, y_pred)")


def _resampled_scores(y_true: np.ndarray, y_pred: np.ndarray, idx: np.ndarray, metric: str,
                      n_classes: int | None) -> np.ndarray:
    """Accuracy or macro F1 of every (replicate, seed) at once: (B,) means over seeds.

    idx: (B, N) resampled image positions. Equals scikit-learn's accuracy_score and f1_score(average="macro",
    zero_division=0, labels=range(n_classes) or the classes present in y_true or y_pred) per replicate, but
    with array arithmetic instead of B x S calls (tested against scikit-learn).
    """
    t = y_true[idx]                                   # (B, N)
    p = y_pred[:, idx].transpose(1, 0, 2)             # (B, S, N)
    if metric == "accuracy":
        return (p == t[:, None, :]).mean(2).mean(1)
    if n_classes is None:
        classes = np.union1d(y_true, y_pred.ravel())
        t, p = np.searchsorted(classes, t), np.searchsorted(classes, p)
        k = len(classes)
    else:
        k = int(n_classes)
    onehot = np.eye(k, dtype=np.int32)
    true_count = onehot[t].sum(1)                     # (B, K) support
    pred_count = onehot[p].sum(2)                     # (B, S, K)
    hit = onehot[p] * (p == t[:, None, :])[..., None]
    tp = hit.sum(2)                                   # (B, S, K)
    denom = true_count[:, None, :] + pred_count       # F1 = 2 TP / (|true| + |pred|); 0 where both are empty
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(tp.shape, dtype=float), where=denom > 0)
    if n_classes is None:  # scikit-learn's macro average over the labels present in this replicate
        present = (true_count[:, None, :] + pred_count) > 0
        return (f1.sum(2) / present.sum(2)).mean(1)
    return f1.mean(2).mean(1)


def bootstrap_ci(y_true, y_pred, metric: str | Callable = "accuracy", n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05, n_classes: int | None = None) -> Interval:
    """Percentile bootstrap interval (1 - alpha) of a metric over the held-out images.

    y_true: (N,) class indices. y_pred: (N,) for one run, or (S, N) for S seeds predicting the same N images
    (the engine keeps splits fixed across seeds). With several seeds each bootstrap replicate draws one
    resample of the images and applies it to every seed (paired), and the statistic is the mean over seeds:
    the interval is the uncertainty of the seed-averaged score due to the finite test set, and the seed
    spread is reported beside it as the std. metric: "accuracy", "macro_f1" (over `n_classes` classes, as
    the engine's macro average; default the classes present) or a callable(y_true, y_pred) -> float.
    The two named metrics are computed for all replicates at once (the same numbers as scikit-learn's).
    """
    y_true = np.asarray(y_true)
    y_pred = np.atleast_2d(np.asarray(y_pred))
    if y_pred.shape[1] != len(y_true):
        raise ValueError(f"y_pred has {y_pred.shape[1]} predictions per seed but y_true has {len(y_true)} labels")
    if not len(y_true):
        raise ValueError("bootstrap_ci needs at least one image")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} must lie strictly between 0 and 1")
    fn = _metric_fn(metric, n_classes)
    estimate = float(np.mean([fn(y_true, p) for p in y_pred]))
    rng = np.random.default_rng(seed)
    if callable(metric):
        stats = np.empty(n_boot)
        for b in range(n_boot):
            idx = rng.integers(0, len(y_true), len(y_true))
            stats[b] = np.mean([fn(y_true[idx], p[idx]) for p in y_pred])
    else:
        idx = rng.integers(0, len(y_true), (n_boot, len(y_true)))
        chunk = max(1, 2_000_000 // max(1, len(y_true) * len(y_pred) * (n_classes or 8)))  # bound the memory
        stats = np.concatenate([_resampled_scores(y_true, y_pred, idx[i:i + chunk], metric, n_classes)
                                for i in range(0, n_boot, chunk)])
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return Interval(estimate, float(low), float(high))


def paired_predictions(run_dirs: Sequence[str | os.PathLike], generators: Sequence[str] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Held-out (y_true (N,), y_pred (S, N), generators) of several seeds of one technique, aligned by path."""
    frames = [load_predictions(d, heldout_split(d)) for d in run_dirs]
    if not frames:
        raise ValueError("paired_predictions needs at least one run folder")
    generators = list(generators or [c[2:] for c in frames[0].columns if c.startswith("p_")])
    first = frames[0].set_index("path")
    preds = []
    for d, f in zip(run_dirs, frames):
        f = f.set_index("path")
        if set(f.index) != set(first.index):
            raise DataError(f"{d}: its held-out images differ from those of {run_dirs[0]}; bootstrap seeds of one "
                            "technique trained on the same data (same data folder and held-out subclass)")
        preds.append(_labels(f.loc[first.index].reset_index(), generators, str(d))[1])
    y_true = _labels(first.reset_index(), generators, str(run_dirs[0]))[0]
    return y_true, np.stack(preds), generators


# --------------------------------------------------------------------------------------------- gap closed
class GapClosed(NamedTuple):
    value: float  # NaN when undefined
    note: str     # "" when defined, else why not


def gap_closed(acc_technique: float, acc_baseline: float, acc_oracle: float, min_gap: float = 1e-9) -> GapClosed:
    """(acc_technique - acc_baseline) / (acc_oracle - acc_baseline): the share of the way from the biased
    baseline to the oracle (the same model trained on unbiased data) a technique covers. Seed 002's
    adversarial debiasing covers (0.56 - 0.49) / (0.91 - 0.49) = 17 % of the way to its fine-tuning.

    When the oracle does not beat the baseline (denominator <= min_gap) there is no gap to close: NaN, and the
    note says so.
    """
    gap = float(acc_oracle) - float(acc_baseline)
    if not np.isfinite(gap) or gap <= min_gap:
        return GapClosed(float("nan"), f"undefined: the oracle ({acc_oracle:.3f}) does not beat the baseline "
                                       f"({acc_baseline:.3f}), so there is no gap to close")
    return GapClosed((float(acc_technique) - float(acc_baseline)) / gap, "")


# --------------------------------------------------------------------------------------------- summary
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
        gens = [c[2:] for c in pred.columns if c.startswith("p_")]
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
                  alpha: float = 0.05, seed: int = 0, fmt: bool = True, digits: int = 2,
                  probe: pd.DataFrame | None = None, reliance: pd.DataFrame | None = None) -> pd.DataFrame:
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
    area). fmt=False returns the numbers; the baseline and oracle accuracies are in `table.attrs`, and
    `table.attrs["caption"]` says what the cells are.
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
    if not fmt:
        return table
    out = format_summary(table, digits, alpha)
    out.attrs.update(table.attrs)
    return out


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


def format_summary(table: pd.DataFrame, digits: int = 2, alpha: float = 0.05) -> pd.DataFrame:
    """The numbers of `summary_table(fmt=False)` as text cells: "0.49 ± 0.02", "[0.45, 0.53]", "17 %"."""
    level = f"{100 * (1 - alpha):.0f}%"

    def pm(mean, std):
        return "" if pd.isna(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"

    def ci(lo, hi):
        return "" if pd.isna(lo) else f"[{lo:.{digits}f}, {hi:.{digits}f}]"

    def num(v):
        return "" if pd.isna(v) else f"{v:.{digits}f}"

    out = pd.DataFrame(index=table.index)
    out["avg precision"] = [pm(m, s) for m, s in zip(table.avg_precision, table.avg_precision_std)]
    out["avg recall"] = [pm(m, s) for m, s in zip(table.avg_recall, table.avg_recall_std)]
    out["avg F1"] = [pm(m, s) for m, s in zip(table.avg_f1, table.avg_f1_std)]
    out[f"F1 {level} CI"] = [ci(lo, hi) for lo, hi in zip(table.f1_low, table.f1_high)]
    out["accuracy"] = [pm(m, s) for m, s in zip(table.accuracy, table.accuracy_std)]
    out[f"accuracy {level} CI"] = [ci(lo, hi) for lo, hi in zip(table.accuracy_low, table.accuracy_high)]
    out["val accuracy"] = table.val_accuracy.map(num)
    out["shortcut gap"] = table.shortcut_gap.map(num)
    out["worst recall"] = table.worst_recall.map(num)
    out["worst generator"] = table.worst_generator
    out["ECE"] = table.ece.map(num)
    out["AUC"] = table.auc.map(num)
    for column in [c for c in table.columns if c == "gap_closed" or c.startswith("gap_closed_")]:
        label = "gap closed" + (f" vs {column[len('gap_closed_'):]}" if column != "gap_closed" else "")
        out[label] = table[column].map(lambda v: "" if pd.isna(v) else f"{100 * v:.0f} %")
    if "probe_accuracy" in table:
        out["subclass probe"] = [pm(m, s) for m, s in zip(table.probe_accuracy, table.probe_std)]
        out["probe chance"] = table.probe_chance.map(num)
    if "reliance" in table:
        out["CAM share in object"] = [pm(m, s) for m, s in zip(table.reliance, table.reliance_std)]
        out["object area"] = table.mask_area.map(num)
    out["held-out split"] = table.heldout_split
    out["seeds"] = table.seeds
    out["uses target data"] = table.uses_target_data.map({True: "yes", False: "no"})
    out["note"] = table.note
    out.attrs.update({k: v for k, v in table.attrs.items() if not isinstance(v, pd.DataFrame)})
    return out
