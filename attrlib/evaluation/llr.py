"""Seed 000's Figure 2 in numbers: each generator's log-likelihood ratio on its own images against the other
generators' images (`attrlib.reporting.llr_figure` draws it).

    LLR_g(x) = log p(x | g) - log p(x | not g),   p(x | not g) = mean over h != g of p(x | h)

the alternatives weighted equally. A classifier's posterior is p(g | x) = p(x | g) pi_g / p(x), with pi the
generator shares it was trained on, so log p(x | g) = log p(g | x) - log pi_g + c(x), and c(x) cancels in the
ratio: the LLR comes from the predicted log-probabilities (predictions.csv's logp_ columns) with the training
prior removed. It is the evidence the image carries, not the posterior odds: a model whose output is its
prior (an image with no evidence) scores 0 for every generator, whatever the class balance of its training
split, and a confident model is not cut at the +-13.8 of a probability clipped at 1e-6.

The prior is the one the model learned: the generator shares its training loader drew
(`Technique.training_prior`, recorded as `train_prior` in metrics.json): the train split's frequencies
under shuffling, uniform under weighted_sampling, ft_train's for fine_tuning (its last training data).
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from .. import records, techniques
from ..data import load_config_data
from ..errors import ConfigError, DataError
from ..runfolder import check_prediction_frame, generators_of, load_predictions, log_probabilities

LLR_DEFINITION = ("LLR_g(x) = log p(x|g) - log p(x|not g), p(x|not g) the mean of p(x|h) over the other generators "
                  "(weighted equally); from the predicted log-probabilities with the training prior removed "
                  "(0 = no evidence either way)")


def log_likelihood_ratios(log_probs, prior) -> np.ndarray:
    """(N, K) LLR_g(x) of every image and generator (module docstring) from (N, K) predicted log-probabilities
    (or logits: a per-image constant cancels) and the (K,) training prior the model learned."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    k = log_probs.shape[1]
    if prior.shape != (k,):
        raise ValueError(f"prior has shape {prior.shape}; it needs one share per generator ({k})")
    if k < 2:
        raise ValueError("an LLR needs at least two generators")
    seen = prior > 0
    if seen.sum() < 2:
        raise DataError(f"the training prior {prior.tolist()} gives fewer than two generators a share above 0: the "
                        "model saw at most one generator in training, so no likelihood ratio is defined; train on "
                        "data that has several generators")
    # a generator the model never trained on (share 0: fine_tuning on a held-out subclass one generator lacks)
    # has no likelihood: its LLR is NaN, and it is no alternative in the others' "not g"
    out = np.full(log_probs.shape, np.nan)
    loglik = log_probs[:, seen] - np.log(prior[seen] / prior[seen].sum())   # log p(x|g) + c(x)
    m = int(seen.sum())
    others = np.where(np.eye(m, dtype=bool)[None], -np.inf, loglik[:, None, :])   # (N, g, h): h != g
    out[:, seen] = loglik - (logsumexp(others, axis=2) - np.log(m - 1))
    return out


def llr_scores(pred_frame: pd.DataFrame, generators: Sequence[str], prior=None) -> pd.DataFrame:
    """Long table of LLR_g(x) (module docstring) for every image and every generator g.

    pred_frame: rows of predictions.csv (logp_ columns; without them the log-probabilities are recomputed
    from p_, and `attrs["note"]` says so). prior: the training prior, (K,) in `generators` order or a mapping
    generator -> share (`training_prior(run)`); None: uniform, which is right only for a model trained on
    balanced generators, and the note says so.
    Columns: path, generator (the image's true generator), scored (g), own (image is g's), llr.
    """
    generators = list(generators)
    check_prediction_frame(pred_frame, where="llr_scores")
    log_probs, note = log_probabilities(pred_frame, generators)
    notes = [note] if note else []
    if prior is None:
        prior = np.full(len(generators), 1.0 / len(generators))
        notes.append("no training prior given: uniform assumed, so an unbalanced training split's prior stays in")
    elif isinstance(prior, Mapping):
        missing = [g for g in generators if g not in prior]
        if missing:
            raise DataError(f"llr_scores: the prior has no share for {missing}; give one per generator {generators}")
        prior = np.array([prior[g] for g in generators], dtype=float)
    llr = log_likelihood_ratios(log_probs, prior)
    unseen = [g for g, share in zip(generators, np.asarray(prior, dtype=float)) if not share > 0]
    if unseen:
        notes.append(f"{', '.join(unseen)}: no training image for this model (prior share 0), LLR undefined (NaN)")
    true = pred_frame["generator"].to_numpy()
    parts = [pd.DataFrame({"path": pred_frame["path"].to_numpy(), "generator": true, "scored": g,
                           "own": true == g, "llr": llr[:, i]}) for i, g in enumerate(generators)]
    out = pd.concat(parts, ignore_index=True).dropna(subset=["llr"]).reset_index(drop=True)  # unseen: left out
    out.attrs.update(definition=LLR_DEFINITION, note="; ".join(notes))
    return out


def training_prior(run: str | os.PathLike) -> tuple[dict[str, float], str]:
    """The generator shares a run's model was trained on, and a note: `train_prior` of its metrics.json (the
    engine records it), else recomputed from its data and technique (`Technique.training_prior` on its train
    split) for a run made before it was recorded; when that data cannot be read, uniform, and the note says so."""
    record = records.read(run)
    recorded = record.metrics.get("train_prior")
    if recorded:
        return {g: float(v) for g, v in recorded.items()}, ""
    config = record.config
    try:
        data = load_config_data(config)
        technique = techniques.build_technique(config, data)
    except (OSError, ConfigError, DataError) as err:
        generators = generators_of(load_predictions(run))
        return ({g: 1.0 / len(generators) for g in generators},
                f"no train_prior recorded and the run's data cannot be read ({type(err).__name__}); uniform prior "
                "assumed, so the training prior is not removed")
    prior = technique.training_prior(data.split(technique.train_split))
    return dict(zip(data.generators, prior.tolist())), ""


def runs_llr_scores(run_dirs: Sequence[str | os.PathLike], split: str = "heldout") -> pd.DataFrame:
    """`llr_scores` of several runs (seeds, rotations) pooled, each with its own training prior; `attrs` carry
    the definition and the notes (a run without logp_ columns or without a recorded prior)."""
    if not len(run_dirs):
        raise ValueError("runs_llr_scores needs at least one run folder")
    parts, notes = [], []
    for d in run_dirs:
        frame = load_predictions(d, split)
        generators = generators_of(frame)
        prior, note = training_prior(d)
        scores = llr_scores(frame, generators, prior)
        parts.append(scores.assign(run=str(d)))
        notes += [n for n in (note, scores.attrs["note"]) if n]
    out = pd.concat(parts, ignore_index=True)
    out.attrs.update(definition=LLR_DEFINITION, note="; ".join(dict.fromkeys(notes)))
    return out
