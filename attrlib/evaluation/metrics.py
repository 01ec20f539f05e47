"""Per-run metrics, from a predictions frame (rows of a run's predictions.csv), with scikit-learn wherever it
has the metric.

    split_metrics         the metrics of one split as metrics.json holds them (accuracy, balanced accuracy,
                          macro averages, per-generator precision/recall/F1/support, confusion counts)
    floors                what predictors that ignore the image score on a split: the majority class of the
                          split and the training prior's most frequent generator
    run_metrics           every split of a run's predictions, and its held-out split with its floors:
                          metrics.json's numbers
    seed_style_report     seed 002's per-generator table: precision, recall, F1, support, average, accuracy
    confusion             counts or row-normalised confusion matrix
    per_generator_auc     one-vs-rest ROC AUC of each generator's probability
    expected_calibration_error   top-label ECE, 15 equal-width bins (scikit-learn has none)
    worst_generator_recall, shortcut_gap

Numbers over seeds are in `stats`, the LLR scores in `llr`, the per-technique summary in `summary`; tables
and figures are drawn by `attrlib.reporting`.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score

from ..errors import DataError
from ..runfolder import check_prediction_frame

REPORT_COLUMNS = ("precision", "recall", "f1", "support")
ECE_BINS = 15
SPLIT_ORDER = ("val", "test", "ft_test")  # the order of the splits in metrics.json


def class_labels(frame: pd.DataFrame, generators: Sequence[str], where: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer class indices (position in `generators`) of the true and the predicted generator."""
    check_prediction_frame(frame, where=where)
    index = {g: i for i, g in enumerate(generators)}
    for column in ("generator", "pred"):
        unknown = sorted(set(frame[column]) - set(index))
        if unknown:
            raise DataError(f"{where}: column {column!r} holds {unknown}, which are not among the generators "
                            f"{list(generators)}; pass the generators the run was trained on")
    return frame["generator"].map(index).to_numpy(int), frame["pred"].map(index).to_numpy(int)


def class_probs(frame: pd.DataFrame, generators: Sequence[str], where: str) -> np.ndarray:
    check_prediction_frame(frame, generators, where=where)
    return frame[[f"p_{g}" for g in generators]].to_numpy(float)


MACRO_CONVENTION = ("macro averages (precision, recall, F1) are over the generators present in the evaluated split "
                    "(a generator with no image there is left out, not counted as 0)")


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator as float64, 0 where the denominator is 0 (scikit-learn's `_prf_divide` with
    zero_division=0, the same operations)."""
    denominator = np.asarray(denominator, dtype=np.float64).copy()
    zero = denominator == 0
    denominator[zero] = 1
    out = np.asarray(numerator, dtype=np.float64) / denominator
    out[zero] = 0.0
    return out


def split_metrics(y_true, y_pred, generators: list[str]) -> dict[str, Any]:
    """Seed-style metrics: accuracy, balanced accuracy (= macro recall), macro averages, per-generator
    P/R/F1/support, confusion.

    One scikit-learn `confusion_matrix`, from which precision, recall and F1 are the operations of scikit-learn's
    `precision_recall_fscore_support` (zero_division=0; F1 = 2 tp / (support + predicted)): the numbers of
    `classification_report` bit for bit (tested) without its ten validations of the same labels, which made
    this the summary tables' main cost.

    The macro averages are over the generators present in `y_true` (MACRO_CONVENTION): on a user's folder a
    generator without held-out images would otherwise count as recall 0 and drag every macro number down.
    `macro_over` lists them. Per-generator rows are kept for every generator (support 0 where absent).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(range(len(generators)))
    cm = confusion_matrix(y_true, y_pred, labels=labels) if len(y_true) else np.zeros((len(labels),) * 2, int)
    tp, predicted, support = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)
    precision, recall = _divide(tp, predicted), _divide(tp, support)
    f1 = _divide(2.0 * tp.astype(np.float64), 1.0 * support.astype(np.float64) + predicted.astype(np.float64))
    present = sorted(set(y_true.tolist()))
    names = [generators[i] for i in present]

    def macro(values: np.ndarray) -> float:
        return float(np.mean([values[i] for i in present])) if present else float("nan")

    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else float("nan"),
        # mean recall over the generators present: the headline on a real folder, whose test set is imbalanced
        "balanced_accuracy": macro(recall),
        "macro_precision": macro(precision),
        "macro_recall": macro(recall),
        "macro_f1": macro(f1),
        "macro_over": names,
        "per_generator": {g: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                              "support": int(support[i])} for i, g in enumerate(generators)},
        "confusion": cm.tolist(),
    }


def floors(y_true, generators: Sequence[str], train_prior: Mapping[str, float] | None = None) -> dict[str, dict]:
    """Accuracy and balanced accuracy of two predictors that ignore the image, the floors a real folder's numbers
    are read against: `majority` names the split's most frequent generator for every image (on an imbalanced
    test set its accuracy is far above chance), `prior` names the training prior's most frequent generator
    (what a model that learnt only the label frequencies does; absent without `train_prior`). Each has its
    `generator`; ties go to the first in `generators` order."""
    generators = list(generators)
    y_true = np.asarray(y_true, dtype=int)
    out: dict[str, dict] = {}
    if not len(y_true):
        return out
    picks = {"majority": int(np.bincount(y_true, minlength=len(generators)).argmax())}
    if train_prior:
        prior = np.array([float(train_prior.get(g, 0.0)) for g in generators])
        picks["prior"] = int(prior.argmax())
    for name, k in picks.items():
        m = split_metrics(y_true, np.full(len(y_true), k), generators)
        out[name] = {"generator": generators[k], "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"]}
    return out


def run_metrics(predictions: pd.DataFrame, generators: Sequence[str], heldout_split: str,
                train_prior: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The numbers of a run's metrics.json from its predictions (rows of every split): `split_metrics` of each
    split present (val, test, ft_test in that order, then any other); `heldout`, the metrics of `heldout_split`
    with its name and its `floors` (`floors`: majority class, training prior when given); and the headline
    `heldout_balanced_accuracy` (mean recall over the generators present in the held-out split)."""
    generators = list(generators)
    y_true, y_pred = class_labels(predictions, generators, "run_metrics")
    splits = predictions["split"].to_numpy()
    present = list(dict.fromkeys(splits))
    metrics = {split: split_metrics(y_true[splits == split], y_pred[splits == split], generators)
               for split in [s for s in SPLIT_ORDER if s in present] + [s for s in present if s not in SPLIT_ORDER]}
    if heldout_split not in metrics:
        raise DataError(f"run_metrics: the predictions have no rows of the held-out split {heldout_split!r}, only of "
                        f"{present}; pass all the rows of the run's predictions.csv and the split it is judged on")
    held = splits == heldout_split
    metrics["heldout"] = {"split": heldout_split, **metrics[heldout_split],
                          "floors": floors(y_true[held], generators, train_prior)}
    metrics["heldout_balanced_accuracy"] = metrics["heldout"]["balanced_accuracy"]
    return metrics


def seed_style_report(pred_frame: pd.DataFrame, generators: Sequence[str], split: str | None = None) -> pd.DataFrame:
    """Seed 002's table for one run: a row per generator (precision, recall, f1, support), then `average`
    (the macro average over the generators present in the split, MACRO_CONVENTION; support = all images) and `accuracy` (in the f1 column, as scikit-learn prints it).
    The numbers are `split_metrics`'.

    pred_frame: rows of predictions.csv (already one split, or pick one with `split`).
    """
    if split is not None:
        pred_frame = pred_frame[pred_frame["split"] == split]
    y_true, y_pred = class_labels(pred_frame, generators, "seed_style_report")
    if not len(y_true):
        raise DataError(f"seed_style_report: no rows{f' of split {split!r}' if split else ''}; nothing to report")
    m = split_metrics(y_true, y_pred, list(generators))
    rows = {g: [v["precision"], v["recall"], v["f1"], v["support"]] for g, v in m["per_generator"].items()}
    rows["average"] = [m["macro_precision"], m["macro_recall"], m["macro_f1"], m["n"]]  # over generators present
    rows["accuracy"] = [np.nan, np.nan, m["accuracy"], m["n"]]
    out = pd.DataFrame.from_dict(rows, orient="index", columns=list(REPORT_COLUMNS)).astype(float)
    out["support"] = out["support"].astype(int)
    out.index.name = "generator"
    return out


def confusion(pred_frame: pd.DataFrame, generators: Sequence[str], normalize: str | None = None) -> pd.DataFrame:
    """Confusion matrix (rows true generator, columns predicted); normalize=None (counts) or "true" (rows sum
    to 1; a generator with no image gives a row of zeros)."""
    if normalize not in (None, "true"):
        raise ValueError(f"normalize={normalize!r}; valid choices: None (counts), 'true' (row-normalised)")
    y_true, y_pred = class_labels(pred_frame, generators, "confusion")
    cm = confusion_matrix(y_true, y_pred, labels=list(range(len(generators))), normalize=normalize)
    return pd.DataFrame(cm, index=pd.Index(list(generators), name="true"),
                        columns=pd.Index(list(generators), name="predicted"))


def per_generator_auc(pred_frame: pd.DataFrame, generators: Sequence[str]) -> pd.Series:
    """One-vs-rest ROC AUC of p_g for "is generator g" per generator; NaN where the frame has only one class."""
    y_true, _ = class_labels(pred_frame, generators, "per_generator_auc")
    probs = class_probs(pred_frame, generators, "per_generator_auc")
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
    y_true, _ = class_labels(pred_frame, generators, "calibration_error")
    return expected_calibration_error(y_true, class_probs(pred_frame, generators, "calibration_error"), n_bins)


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

