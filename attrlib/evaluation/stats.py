"""Numbers over seeds, images and held-out rotations: mean and std over seeds, the percentile bootstrap, gap
closed, and the paired hierarchical bootstrap every comparison of the study goes through.

    aggregate_over_seeds  mean, std (ddof=1; 0 for one seed) and n of metric dicts or frames
    bootstrap_ci          percentile interval of held-out accuracy or macro F1 (see its docstring for seeds)
    gap_closed            the share of the way from the biased baseline to the oracle a technique covers (a point)
    hierarchical_bootstrap  one technique's accuracy or macro F1 over rotations, seeds and images (CONVENTION)
    paired_bootstrap      technique - baseline and gap closed vs an oracle, paired per seed and image (arrays)
    paired_comparison     the same from run folders, paired by (held-out rotation, seed, image path)
    verdict               "A beats B" only where the interval of A - B excludes 0, else "not distinguishable"
"""
from __future__ import annotations

import functools
import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from .. import records
from ..errors import DataError
from ..rotation import Rotation
from ..runfolder import PREDICTIONS, heldout_split, load_predictions


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



# --------------------------------------------------------------------------------------------- hierarchical
# Runs may span several held-out rotations (config.json's `heldout`), each with several seeds scored on the
# same images. A replicate resamples, within each rotation, the seeds with replacement and then the images
# with replacement (one draw of images shared by every seed and every paired arm); the rotations are fixed
# strata (every rotation is in every replicate, weighted equally): the interval is the uncertainty over
# seeds and test images of the study's rotations, not over which subclasses could have been held out.
CONVENTION = ("hierarchical bootstrap: within each held-out rotation, seeds resampled with replacement, then "
              "images with replacement (the same images for every arm: paired); rotations fixed strata, "
              "weighted equally; percentile intervals")


def _counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """(n_boot, n) draw counts of n items resampled with replacement (multinomial: the same law as n indices)."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def _seed_mean(per_seed: np.ndarray, seed_w: np.ndarray) -> np.ndarray:
    """(B, S) statistic per replicate and seed, averaged with the replicate's seed draw counts (B, S)."""
    return (per_seed * seed_w).sum(1) / seed_w.shape[1]


def _accuracy_per_seed(correct: np.ndarray, image_w: np.ndarray) -> np.ndarray:
    """(B, S) accuracy of every seed on every replicate's images: correct (S, N) 0/1, image_w (B, N) counts (their
    sum is N when images are drawn one by one; it varies with the clusters drawn when they are drawn in clusters)."""
    return image_w @ correct.T / image_w.sum(1, keepdims=True)


def _macro_f1_per_seed(y_true: np.ndarray, y_pred: np.ndarray, image_w: np.ndarray, labels: np.ndarray,
                       n_classes: int) -> np.ndarray:
    """(B, S) macro F1 over `labels` of every seed on every replicate's images (weighted counts)."""
    s, n = y_pred.shape
    onehot = np.eye(n_classes)
    pred = onehot[y_pred]                                           # (S, N, K)
    hit = pred * (y_pred == y_true[None])[..., None]
    flat = lambda a: a.transpose(1, 0, 2).reshape(n, s * n_classes)  # noqa: E731  (N, S*K) for one matmul
    tp = (image_w @ flat(hit)).reshape(-1, s, n_classes)
    pred_count = (image_w @ flat(pred)).reshape(-1, s, n_classes)
    true_count = (image_w @ onehot[y_true])[:, None, :]
    denom = true_count + pred_count                                 # F1 = 2 TP / (|true| + |pred|)
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(tp.shape), where=denom > 0)
    return f1[..., labels].mean(2)


def _interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _check_alpha(alpha: float, n_boot: int) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} must lie strictly between 0 and 1")
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot!r}: give at least one bootstrap resample (1000 for a table)")


def hierarchical_bootstrap(per_rotation: Mapping[str, tuple[np.ndarray, np.ndarray]], metric: str = "accuracy",
                           n_classes: int | None = None, n_boot: int = 1000, alpha: float = 0.05,
                           seed: int = 0, clusters: Mapping[str, Sequence] | None = None
                           ) -> tuple[pd.DataFrame, Interval]:
    """One technique's accuracy or macro F1 with CONVENTION's hierarchical bootstrap.

    per_rotation: rotation label -> (y_true (N,), y_pred (S, N)): class indices of the N images of that
    rotation's evaluated split and of S seeds' predictions. Macro F1 is over the generators present in that
    split (MACRO_CONVENTION of `metrics`), of `n_classes` (default: the largest index + 1).
    clusters (optional): rotation label -> a cluster id per image (N,): images that are not independent (renders
    of one clean image, near-duplicates) are resampled together, cluster by cluster; a rotation it does not name
    resamples its images one by one.
    Returns (per rotation: seeds, images, estimate, low, high) and the mean over rotations as an Interval.
    The estimate is the mean over seeds of the metric on all images (mean over rotations for the total).
    """
    _check_alpha(alpha, n_boot)
    if metric not in ("accuracy", "macro_f1"):
        raise ValueError(f"unknown metric {metric!r}; valid: 'accuracy', 'macro_f1'")
    if not per_rotation:
        raise ValueError("hierarchical_bootstrap needs at least one rotation")
    rng = np.random.default_rng(seed)
    rows, reps, points = {}, [], []
    for rotation in sorted(per_rotation):
        y_true, y_pred = (np.asarray(a) for a in per_rotation[rotation])
        y_pred = np.atleast_2d(y_pred)
        if y_pred.shape[1] != len(y_true) or not len(y_true):
            raise ValueError(f"rotation {rotation!r}: y_pred is {y_pred.shape} for {len(y_true)} labels; give "
                             "(seeds, images) predictions of at least one image")
        s, n = y_pred.shape
        seed_w = _counts(rng, s, n_boot)
        if clusters is not None and rotation in clusters:
            ids = np.asarray(clusters[rotation])
            if ids.shape != (n,):
                raise ValueError(f"rotation {rotation!r}: {ids.shape} cluster ids for {n} images; give one per image")
            _, cluster = np.unique(ids, return_inverse=True)
            image_w = _counts(rng, int(cluster.max()) + 1, n_boot)[:, cluster]  # a cluster's count on each image
        else:
            image_w = _counts(rng, n, n_boot)
        ones_s, ones_n = np.ones((1, s)), np.ones((1, n))
        if metric == "accuracy":
            correct = (y_pred == y_true[None]).astype(float)
            stat = lambda iw: _accuracy_per_seed(correct, iw)  # noqa: E731
        else:
            k = n_classes or int(max(y_true.max(), y_pred.max())) + 1
            labels = np.unique(y_true)
            stat = lambda iw: _macro_f1_per_seed(y_true, y_pred, iw, labels, k)  # noqa: E731
        point = float(_seed_mean(stat(ones_n), ones_s)[0])
        rep = _seed_mean(stat(image_w), seed_w)
        rows[rotation] = {"seeds": s, "images": n, "estimate": point, **dict(zip(("low", "high"), _interval(rep, alpha)))}
        reps.append(rep)
        points.append(point)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "rotation"
    low, high = _interval(np.mean(reps, axis=0), alpha)
    return table, Interval(float(np.mean(points)), low, high)


def verdict(low: float, high: float, a: str = "A", b: str = "B") -> str:
    """What an interval of A - B supports: "A beats B" only if it lies above 0, "B beats A" if below, else
    "not distinguishable" (also when the interval is unknown)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "not distinguishable"
    if low > 0:
        return f"{a} beats {b}"
    if high < 0:
        return f"{b} beats {a}"
    return "not distinguishable"


@dataclass
class PairedComparison:
    """A technique against the baseline (and an oracle), per rotation and over rotations.

    per_rotation: one row per rotation; overall: the mean over rotations (the same fields); replicates: the
    bootstrap replicates of the overall numbers (accuracy, baseline_accuracy, oracle_accuracy, difference,
    oracle_gap, gap_closed); notes: how the arms were paired, what was left out.
    Fields: seeds, images, accuracy, baseline_accuracy, oracle_accuracy, difference (technique - baseline),
    oracle_gap (oracle - baseline), gap_closed (difference / oracle_gap, a ratio of mean differences per
    replicate), each with _low and _high; verdict (of the difference); oracle_pairing.
    """
    per_rotation: pd.DataFrame
    overall: pd.Series
    replicates: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)
    # rotation -> the replicates of that rotation's numbers (seeds and images resampled): `rotation_bootstrap`
    per_rotation_replicates: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def note(self) -> str:
        return "; ".join(dict.fromkeys(self.notes))


STATS = ("accuracy", "baseline_accuracy", "oracle_accuracy", "difference", "oracle_gap", "gap_closed")


def _summarise(point: dict[str, float], reps: dict[str, np.ndarray], alpha: float, a: str, b: str,
               min_gap: float) -> tuple[dict, list[str]]:
    """The fields of one row from point estimates and replicates (gap closed from the two differences)."""
    notes = []
    point, reps = dict(point), dict(reps)
    gap_point, gap_reps = point.get("oracle_gap", np.nan), reps.get("oracle_gap")
    if gap_reps is None:
        point["gap_closed"], reps["gap_closed"] = np.nan, None
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            point["gap_closed"] = point["difference"] / gap_point if gap_point > min_gap else np.nan
            reps["gap_closed"] = reps["difference"] / gap_reps
    out = {}
    for name in STATS:
        out[name] = float(point.get(name, np.nan))
        low, high = (np.nan, np.nan) if reps.get(name) is None else _interval(reps[name], alpha)
        out[f"{name}_low"], out[f"{name}_high"] = low, high
    if gap_reps is not None:
        if not gap_point > min_gap:
            notes.append(f"gap closed undefined: the reference ({point['oracle_accuracy']:.3f}) does not beat the "
                         f"baseline ({point['baseline_accuracy']:.3f})")
            out["gap_closed_low"] = out["gap_closed_high"] = np.nan
        elif not out["oracle_gap_low"] > 0:
            # the denominator's interval reaches 0: the ratio's interval is unbounded
            notes.append("gap closed interval unbounded: the reference's lead over the baseline is not "
                         "distinguishable from 0")
            out["gap_closed_low"], out["gap_closed_high"] = -np.inf, np.inf
    out["verdict"] = verdict(out["difference_low"], out["difference_high"], a, b)
    return out, notes


def paired_bootstrap(technique: Mapping[str, np.ndarray], baseline: Mapping[str, np.ndarray],
                     oracle: Mapping[str, np.ndarray] | float | None = None,
                     oracle_paired: bool | Mapping[str, bool] = True, n_boot: int = 1000, alpha: float = 0.05,
                     seed: int = 0, names: tuple[str, str] = ("technique", "baseline"),
                     min_gap: float = 1e-9) -> PairedComparison:
    """The paired hierarchical bootstrap (CONVENTION) of a technique against the baseline and an oracle.

    technique, baseline: rotation label -> (S, N) 0/1 array, correct[seed, image], the same seeds (rows) and
    the same images (columns) in both. oracle: the same for the oracle: (S, N) on the same images when
    `oracle_paired` (for that rotation), else (S, N_o) on its own images (paired by rotation and seed only:
    its images are drawn separately); a number (its accuracy, taken as exact); None: no gap closed.
    Per replicate: accuracies, difference = technique - baseline, oracle_gap = oracle - baseline, and gap
    closed = difference / oracle_gap; over rotations the means of the per-rotation replicates (gap closed:
    the ratio of the mean differences). `names` word the verdict ("technique beats baseline").
    """
    _check_alpha(alpha, n_boot)
    if set(technique) != set(baseline) or not technique:
        raise ValueError(f"technique and baseline need the same rotations; got {sorted(technique)} and "
                         f"{sorted(baseline)}")
    if isinstance(oracle, Mapping) and not set(technique) <= set(oracle):
        raise ValueError(f"the oracle lacks rotation(s) {sorted(set(technique) - set(oracle))}")
    rng = np.random.default_rng(seed)
    rows, notes, per_rot_points, per_rot_reps, pairing = {}, [], [], [], {}
    for rotation in sorted(technique):
        t, b = (np.atleast_2d(np.asarray(a, dtype=float)) for a in (technique[rotation], baseline[rotation]))
        if t.shape != b.shape or not t.size:
            raise ValueError(f"rotation {rotation!r}: technique {t.shape} and baseline {b.shape} must be the same "
                             "(seeds, images), not empty")
        s, n = t.shape
        seed_w, image_w = _counts(rng, s, n_boot), _counts(rng, n, n_boot)
        ones_s, ones_n = np.ones((1, s)), np.ones((1, n))

        def acc(c, iw, sw):
            return _seed_mean(_accuracy_per_seed(c, iw), sw)

        point = {"accuracy": acc(t, ones_n, ones_s)[0], "baseline_accuracy": acc(b, ones_n, ones_s)[0]}
        reps = {"accuracy": acc(t, image_w, seed_w), "baseline_accuracy": acc(b, image_w, seed_w)}
        if isinstance(oracle, Mapping):
            o = np.atleast_2d(np.asarray(oracle[rotation], dtype=float))
            paired = oracle_paired[rotation] if isinstance(oracle_paired, Mapping) else oracle_paired
            if o.shape[0] != s or (paired and o.shape != t.shape):
                raise ValueError(f"rotation {rotation!r}: the oracle is {o.shape}; it needs {s} seed rows"
                                 + (f" and the same {n} images" if paired else ""))
            # unpaired: the oracle's own images, drawn separately (the seed draw stays shared)
            o_w = image_w if paired else _counts(rng, o.shape[1], n_boot)
            point["oracle_accuracy"] = acc(o, np.ones((1, o.shape[1])), ones_s)[0]
            reps["oracle_accuracy"] = acc(o, o_w, seed_w)
            pairing[rotation] = "image" if paired else "seed"
        elif oracle is not None:
            point["oracle_accuracy"] = float(oracle)
            reps["oracle_accuracy"] = np.full(n_boot, float(oracle))
            pairing[rotation] = "fixed"
        point["difference"] = point["accuracy"] - point["baseline_accuracy"]
        reps["difference"] = reps["accuracy"] - reps["baseline_accuracy"]
        if "oracle_accuracy" in point:
            point["oracle_gap"] = point["oracle_accuracy"] - point["baseline_accuracy"]
            reps["oracle_gap"] = reps["oracle_accuracy"] - reps["baseline_accuracy"]
        row, row_notes = _summarise(point, reps, alpha, *names, min_gap)
        rows[rotation] = {"seeds": s, "images": n, **row, "oracle_pairing": pairing.get(rotation, "")}
        notes += [f"{rotation}: {x}" for x in row_notes]
        per_rot_points.append(point)
        per_rot_reps.append(reps)
    per_rotation = pd.DataFrame.from_dict(rows, orient="index")
    per_rotation.index.name = "rotation"
    # over rotations: the mean of the per-rotation numbers, replicate by replicate
    keys = [k for k in per_rot_points[0] if k != "gap_closed"]
    point = {k: float(np.mean([p[k] for p in per_rot_points])) for k in keys}
    reps = {k: np.mean([r[k] for r in per_rot_reps], axis=0) for k in keys}
    row, row_notes = _summarise(point, reps, alpha, *names, min_gap)
    overall = pd.Series({"rotations": len(rows), "seeds": int(per_rotation["seeds"].min()),
                         "images": int(per_rotation["images"].sum()), **row,
                         "oracle_pairing": "/".join(sorted(set(pairing.values())))})
    # one rotation: its notes are the overall ones, without the rotation's name
    notes = notes + [f"mean over rotations: {x}" for x in row_notes] if len(rows) > 1 else row_notes
    if "oracle_gap" in reps:
        with np.errstate(divide="ignore", invalid="ignore"):
            reps["gap_closed"] = reps["difference"] / reps["oracle_gap"]
    return PairedComparison(per_rotation, overall, reps, notes, dict(zip(sorted(technique), per_rot_reps)))


# --------------------------------------------------------------------------------------------- rotations random
ROTATION_CONVENTION = ("rotations random: the independent trainings (rotations that leave out the same "
                       "subclasses, as a crossed pair does, counted once) resampled with replacement on top of each "
                       "rotation's seed and image resampling; undefined (n/a) with fewer than two")
# the numbers of a comparison, with the two derived from the paired differences
REFERENCE_STATS = ("accuracy", "baseline_accuracy", "oracle_accuracy", "difference", "oracle_gap", "gap_closed",
                   "vs_reference")


def _derived(reps: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """gap closed (difference / oracle_gap: a ratio of mean differences) and vs_reference (technique - oracle =
    difference - oracle_gap, paired replicate by replicate) added to the mean replicates of a comparison."""
    out = dict(reps)
    if "oracle_gap" in out:
        with np.errstate(divide="ignore", invalid="ignore"):
            out["gap_closed"] = out["difference"] / out["oracle_gap"]
        out["vs_reference"] = out["difference"] - out["oracle_gap"]
    return out


def rotation_bootstrap(comparison: PairedComparison, units: Mapping[str, str] | None = None, alpha: float = 0.05,
                       seed: int = 0, min_gap: float = 1e-9) -> pd.Series:
    """A comparison's numbers with two intervals each: rotations as fixed strata (`CONVENTION`: `<stat>_low`,
    `<stat>_high`) and rotations random (ROTATION_CONVENTION: `<stat>_rot_low`, `<stat>_rot_high`).

    comparison: a `paired_bootstrap` / `paired_comparison` result. units: rotation -> the independent training
    it belongs to (two rotations with the same key are one model: a crossed pair, whose test and validation
    subclasses swap, leaves the same subclasses out); None: every rotation its own. Per replicate, the units are
    drawn with replacement and each drawn unit contributes the mean of its rotations' replicates (which already
    resample seeds and images), so the interval holds seed, image and rotation uncertainty. Point estimates: the
    mean over units of the mean over their rotations (a crossed pair weighs as one). gap_closed is the ratio of the
    mean differences; vs_reference = technique - oracle. `units` (the count) is in the result; with fewer than two
    units the rotation-random interval is NaN (one training has no spread over rotations to resample).
    """
    per_rot = comparison.per_rotation_replicates
    if not per_rot:
        raise ValueError("rotation_bootstrap needs a comparison with per-rotation replicates (paired_bootstrap's)")
    units = {r: str((units or {}).get(r, r)) for r in per_rot}
    keys = sorted(set(units.values()))
    stats = [k for k in next(iter(per_rot.values())) if k != "gap_closed"]
    points = comparison.per_rotation
    unit_reps = {k: np.stack([np.mean([per_rot[r][k] for r in per_rot if units[r] == u], axis=0) for u in keys])
                 for k in stats}                                                       # (U, B)
    unit_points = {k: np.array([np.mean([points.loc[r, k] for r in per_rot if units[r] == u]) for u in keys])
                   for k in stats}
    point = _derived({k: np.array([v.mean()]) for k, v in unit_points.items()})
    fixed = _derived({k: v.mean(0) for k, v in unit_reps.items()})
    n_boot = next(iter(unit_reps.values())).shape[1]
    weights = _counts(np.random.default_rng(seed), len(keys), n_boot)                 # (B, U)
    random = _derived({k: (weights * v.T).sum(1) / len(keys) for k, v in unit_reps.items()})
    out = {"rotations": len(per_rot), "units": len(keys)}
    for name in REFERENCE_STATS:
        if name not in point:
            continue
        value = float(point[name][0])
        if name == "gap_closed" and not float(point["oracle_gap"][0]) > min_gap:
            value = np.nan
        out[name] = value
        out[f"{name}_low"], out[f"{name}_high"] = _interval(fixed[name], alpha)
        out[f"{name}_rot_low"], out[f"{name}_rot_high"] = (_interval(random[name], alpha) if len(keys) > 1
                                                           else (np.nan, np.nan))
    return pd.Series(out)


# --------------------------------------------------------------------------------------------- from run folders
def rotation_label(heldout: Sequence[str]) -> str:
    """The name of a rotation: its key (`attrlib.rotation.Rotation.key`, "a+b")."""
    return Rotation(heldout).key


def _runs_by_rotation(run_dirs: Sequence[str | os.PathLike], what: str) -> dict[str, dict[int, Path]]:
    """rotation key -> seed -> run folder, from the runs' records (`heldout`, `seed`)."""
    out: dict[str, dict[int, Path]] = {}
    for rotation, recs in records.collect(list(run_dirs)).by_rotation().items():
        seeds = out.setdefault(rotation.key, {})
        for r in recs:
            if r.seed in seeds:
                raise DataError(f"{what}: runs {seeds[r.seed]} and {r.folder} are both seed {r.seed} of rotation "
                                f"{rotation.key!r}; pass one run per (held-out subclass, seed)")
            seeds[r.seed] = r.folder
    return out


def _data_root(run: Path) -> Path:
    data = Path(records.read(run).config.data)
    return data.parent if data.suffix.lower() == ".csv" else data


class _Arm:
    """The predictions of one run on the compared split, indexed by the image's real path."""

    def __init__(self, run: Path, split: str):
        frame = load_predictions(run, split)
        self.run, self.root = run, _data_root(run)
        self.frame = frame.set_index(frame["path"].map(os.path.realpath))

    def correct(self, ids: Sequence[str]) -> np.ndarray:
        rows = self.frame.loc[list(ids)]
        return (rows["pred"] == rows["generator"]).to_numpy(float)

    def relative(self) -> dict[str, str]:
        """relative path (to the run's data root) -> real path."""
        return {os.path.relpath(p, os.path.realpath(self.root)): p for p in self.frame.index}


@functools.lru_cache(maxsize=512)
def _cached_arm(run: str, split: str, mtime_ns: int) -> _Arm:
    return _Arm(Path(run), split)


def _arm(run: Path, split: str) -> _Arm:
    """`_Arm` of a run, read once per version of its predictions.csv (a table compares every technique with
    the same baseline and oracle runs)."""
    return _cached_arm(str(run), split, (Path(run) / PREDICTIONS).stat().st_mtime_ns)


def _same_bytes(a: str, b: str, cache: dict) -> bool:
    def digest(p):
        if p not in cache:
            cache[p] = hashlib.sha1(Path(p).read_bytes()).hexdigest()
        return cache[p]
    return a == b or digest(a) == digest(b)


def _oracle_ids(oracle: list[_Arm], ids: list[str], root: Path, cache: dict) -> tuple[list[str] | None, str]:
    """The oracle's image ids matching `ids` (the compared images, of the data folder `root`), or None and why
    they cannot be paired.

    The same files pair directly; files of another data folder (the unbiased variant) pair by their path
    relative to their data root only if their bytes are identical (a benchmark whose variants share the
    test pool); otherwise they are other images and the oracle is paired by rotation and seed only."""
    own = set.intersection(*(set(a.frame.index) for a in oracle))
    if set(ids) <= own:
        return list(ids), ""
    rel_oracle = oracle[0].relative()
    base = os.path.realpath(root)
    matched = [rel_oracle.get(os.path.relpath(i, base)) for i in ids]
    if not all(m is not None and m in own for m in matched):
        return None, "the oracle's test images are not the technique's (other paths)"
    try:
        if all(_same_bytes(m, i, cache) for m, i in zip(matched, ids)):
            return matched, ""
    except OSError as err:
        return None, f"the oracle's test images could not be compared with the technique's ({type(err).__name__})"
    return None, "the oracle's test images are other images (same names, other bytes)"


def paired_comparison(technique: Sequence[str | os.PathLike], baseline: Sequence[str | os.PathLike],
                      oracle: Sequence[str | os.PathLike] | float | None = None, split: str = "heldout",
                      n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                      names: tuple[str, str] = ("technique", "baseline")) -> PairedComparison:
    """`paired_bootstrap` of run folders: a technique's runs against the baseline's and the oracle's.

    Runs may span several held-out rotations; each run's config.json gives its `heldout` and `seed`. Arms
    are paired by (rotation, seed, image): per rotation the seeds all arms have, the images all their runs
    scored on `split` ("heldout": the technique's held-out split, e.g. ft_test for fine_tuning; the baseline
    and oracle are scored on the same split, so on the same images). The oracle (the baseline trained on
    the unbiased variant) is paired by image when its test images are the same files or identical bytes
    (`_oracle_ids`), else by rotation and seed only, and the notes say which. oracle may also be a number
    (an accuracy, no interval of its own) or None (no gap closed). Rotations or seeds one arm lacks are left
    out, and the notes say so.
    """
    if not len(technique) or not len(baseline):
        raise ValueError("paired_comparison needs at least one technique run and one baseline run")
    if split == "heldout":
        split = heldout_split(technique[0])
    arms = {"technique": _runs_by_rotation(technique, "technique"), "baseline": _runs_by_rotation(baseline, "baseline")}
    oracle_runs = None if oracle is None or isinstance(oracle, (int, float)) else list(oracle)
    if oracle_runs is not None:
        if not oracle_runs:
            raise ValueError("paired_comparison: the oracle is an empty list of runs; pass its runs, a number or None")
        arms["oracle"] = _runs_by_rotation(oracle_runs, "oracle")
    rotations = sorted(set.intersection(*(set(a) for a in arms.values())))
    notes = [f"rotation(s) {sorted(set(a) - set(rotations))} of the {name} left out: not in every arm"
             for name, a in arms.items() if set(a) - set(rotations)]
    if not rotations:
        raise DataError("paired_comparison: no held-out rotation is common to the arms ("
                        + "; ".join(f"{k}: {sorted(v)}" for k, v in arms.items()) + "); train them on the same rotations")
    t_correct, b_correct, o_correct, o_paired, cache = {}, {}, {}, {}, {}
    for rotation in rotations:
        seeds = sorted(set.intersection(*(set(a[rotation]) for a in arms.values())))
        if not seeds:
            raise DataError(f"rotation {rotation!r}: no seed is common to the arms ("
                            + "; ".join(f"{k}: {sorted(v[rotation])}" for k, v in arms.items()) + ")")
        for name, a in arms.items():
            if set(a[rotation]) - set(seeds):
                notes.append(f"{rotation}: {name} seed(s) {sorted(set(a[rotation]) - set(seeds))} left out (unpaired)")
        t = [_arm(arms["technique"][rotation][s], split) for s in seeds]
        b = [_arm(arms["baseline"][rotation][s], split) for s in seeds]
        sets = [set(a.frame.index) for a in t + b]
        ids = sorted(set.intersection(*sets))
        if not ids:
            raise DataError(f"rotation {rotation!r}: the technique's and the baseline's {split} rows share no image "
                            f"({t[0].run}, {b[0].run}); compare runs trained on the same data")
        if any(len(x) != len(ids) for x in sets):
            notes.append(f"{rotation}: {max(map(len, sets)) - len(ids)} image(s) not scored by every run left out")
        t_correct[rotation] = np.stack([a.correct(ids) for a in t])
        b_correct[rotation] = np.stack([a.correct(ids) for a in b])
        if oracle_runs is not None:
            o = [_arm(arms["oracle"][rotation][s], split) for s in seeds]
            matched, why = _oracle_ids(o, ids, b[0].root, cache)
            o_paired[rotation] = matched is not None
            if matched is None:
                notes.append(f"{rotation}: oracle paired by rotation and seed only, not by image: {why}")
                matched = sorted(set.intersection(*(set(a.frame.index) for a in o)))
            o_correct[rotation] = np.stack([a.correct(matched) for a in o])
    result = paired_bootstrap(t_correct, b_correct, o_correct if oracle_runs is not None else oracle,
                              oracle_paired=o_paired, n_boot=n_boot, alpha=alpha, seed=seed, names=names)
    result.notes = notes + result.notes
    result.overall["split"] = split
    return result
