"""Numbers over seeds and over images: mean and std over seeds, the percentile bootstrap, and gap closed.

    aggregate_over_seeds  mean, std (ddof=1; 0 for one seed) and n of metric dicts or frames
    bootstrap_ci          percentile interval of held-out accuracy or macro F1 (see its docstring for seeds)
    gap_closed            the share of the way from the biased baseline to the oracle a technique covers
"""
from __future__ import annotations

import warnings
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score


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


# --------------------------------------------------------------------------------------------- over images
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

