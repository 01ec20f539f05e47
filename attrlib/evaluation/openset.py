"""Open-set attribution: does an image come from none of the generators a model knows?

A closed-set classifier names one of its generators for every image, also for a generator it never saw. Three
scores say how far an image is from the known generators (each: higher = more likely unknown):

    msp           1 - the maximum softmax probability (Hendrycks & Gimpel 2017), from the image's
                  log-probabilities (patches averaged as in evaluation)
    energy        -logsumexp of the logits (Liu et al. 2020), the mean over an image's patches: it needs the
                  logits, which predictions.csv does not keep (log-probabilities lose the per-image constant),
                  so it is computed here with the model
    mahalanobis   the smallest class-conditional Mahalanobis distance (squared) of the image's penultimate
                  features (the generator head's input, patches averaged) to the known generators' training
                  means, one shared covariance (Lee et al. 2018; Ledoit-Wolf shrinkage, scikit-learn)
    relative_mahalanobis
                  mahalanobis minus the squared Mahalanobis distance to one class-agnostic Gaussian of the same
                  training features (Ren et al. 2021, "a simple fix to Mahalanobis distance" for near-OOD): the
                  directions every generator's images vary in (their content) cancel out

`fit_open_set(run)` fits the feature density on the run's training images and the threshold of every score on
its validation images (split `val`: known generators, seen content) at a stated false-rejection rate: the
(1 - frr) quantile of the known validation scores, so that at most that share of known images is flagged.
`score_frame` scores any rows; `open_set_table` measures a run on its `unknown` split (the generators
`Config.unknown_generators` left out of training) against its known test images:

    AUROC         known vs unknown, per score (the Mann-Whitney statistic from average ranks: scikit-learn's
                  roc_auc_score, at a fraction of its cost inside a bootstrap)
    OSCR          Chen et al. 2021 / Dhamija et al. 2018: the area under correct-classification rate of knowns
                  against false-positive rate of unknowns as the threshold moves (1: every known right and
                  accepted before any unknown; a closed-set accuracy a bounds it by a)
    accuracy      closed-set accuracy and balanced accuracy of the knowns, without rejection and at the
                  threshold (a rejected known counts as wrong)

Intervals: the percentile bootstrap over images (`stats.bootstrap_ci`), knowns and unknowns resampled
together; `oscr_curve` gives the threshold trade-off the notebook draws.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.covariance import LedoitWolf
from scipy.stats import rankdata

from ..data import ImageDataset, collate_patches
from ..errors import DataError
from ..runfolder import LoadedRun, load_run
from ..techniques import image_logits, image_starts, per_image
from .llr import log_likelihood_ratios, training_prior
from .stats import Interval, bootstrap_ci

SCORES = ("msp", "energy", "mahalanobis", "relative_mahalanobis")
# the field's baseline (Hendrycks & Gimpel 2017); docs/open_world.md (benchmarks/bench_open_set.py) measures every score
DEFAULT_SCORE = "msp"
DEFAULT_FRR = 0.05          # share of known validation images flagged unknown
CALIBRATION_SPLIT = "val"   # known generators on seen content: the images the threshold is chosen on
SCORE_PREFIX = "score_"


@dataclass
class Outputs:
    """What a model says about N images: log-probabilities (N, K) as evaluation averages patches, energy
    scores (N,), penultimate features (N, D) (patches averaged), and the rows its dataset kept."""
    log_probs: np.ndarray
    energy: np.ndarray
    features: np.ndarray
    frame: pd.DataFrame


@torch.no_grad()
def model_outputs(technique, dataset: ImageDataset, device: str | torch.device = "cpu", batch_size: int = 64,
                  chunk: int = 256, bar=None) -> Outputs:
    """`Outputs` of `technique.predict` over an `ImageDataset` (in its order). The features are the input of
    the model's generator head at its last call while `predict` runs (a forward pre-hook: a technique that
    transforms its test inputs is featurised on what its head then sees). bar: a tqdm bar advanced per image."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_patches)
    caught: list[torch.Tensor] = []
    hook = technique.model.generator_head.register_forward_pre_hook(lambda _m, args: caught.append(args[0].detach()))
    log_probs, energy, feats = [], [], []
    try:
        for batch in loader:
            x = batch["x"]
            parts, feature_parts = [], []
            for i in range(0, len(x), chunk):
                caught.clear()
                part = x[i:i + chunk].to(device)
                parts.append(technique.predict(part).double())
                # the head's last call is the prediction (a test-time attack calls the model before it)
                feature_parts.append(caught[-1].float() if caught and len(caught[-1]) == len(part)
                                     else technique.model.features(technique.test_inputs(part)).float())
            logits, f = torch.cat(parts), torch.cat(feature_parts)
            e = -torch.logsumexp(logits, dim=1)
            owner = batch.get("owner")
            if owner is not None and len(owner) != int(owner[-1]) + 1:
                f, e = per_image(f, owner), per_image(e[:, None], owner)[:, 0]
            log_probs.append(torch.log_softmax(image_logits(logits, owner), dim=1).cpu())
            energy.append(e.cpu())
            feats.append(f.cpu())
            if bar is not None:
                bar.update(len(batch["x"]) if owner is None else int(image_starts(owner).sum()))
    finally:
        hook.remove()
    k = technique.n_generators
    if not log_probs:
        return Outputs(np.zeros((0, k)), np.zeros(0), np.zeros((0, 0), dtype=np.float32), dataset.frame)
    return Outputs(torch.cat(log_probs).numpy(), torch.cat(energy).numpy(), torch.cat(feats).numpy(), dataset.frame)


def _squared_distances(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """(N, C) squared Mahalanobis distances of N feature rows to C means under one precision matrix."""
    d = np.asarray(features, dtype=np.float64)[:, None, :] - means[None]      # (N, C, D)
    return np.einsum("ncd,de,nce->nc", d, precision, d)


class FeatureDensity:
    """Class-conditional Gaussians with one shared covariance (Ledoit-Wolf) on penultimate features, and one
    class-agnostic Gaussian (Ledoit-Wolf) of the same features; `distance` is the smallest squared Mahalanobis
    distance to a class mean, `background_distance` the squared distance to the class-agnostic Gaussian (the
    relative Mahalanobis score is the first minus the second: `unknown_scores`)."""

    def fit(self, features: np.ndarray, labels: np.ndarray) -> "FeatureDensity":
        features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
        classes = np.unique(labels)
        if len(classes) < 1 or len(features) < 2:
            raise DataError("the feature density needs training images of at least one known generator")
        self.means = np.stack([features[labels == c].mean(0) for c in classes])
        centred = features - self.means[np.searchsorted(classes, labels)]
        self.precision = LedoitWolf().fit(centred).precision_
        background = LedoitWolf().fit(features)
        self.background_mean, self.background_precision = background.location_[None], background.precision_
        return self

    def distance(self, features: np.ndarray) -> np.ndarray:
        return _squared_distances(features, self.means, self.precision).min(1) if len(features) else np.zeros(0)

    def background_distance(self, features: np.ndarray) -> np.ndarray:
        if not len(features):
            return np.zeros(0)
        return _squared_distances(features, self.background_mean, self.background_precision)[:, 0]


def unknown_scores(outputs: Outputs, density: FeatureDensity | None) -> pd.DataFrame:
    """score_msp, score_energy, score_mahalanobis and score_relative_mahalanobis (NaN without a density) of every
    image: higher = more unknown."""
    distance, relative = np.full(len(outputs.energy), np.nan), np.full(len(outputs.energy), np.nan)
    if density is not None:  # the class-conditional distances once: the relative score subtracts the background's
        distance = density.distance(outputs.features)
        relative = distance - density.background_distance(outputs.features)
    return pd.DataFrame({
        f"{SCORE_PREFIX}msp": 1.0 - np.exp(outputs.log_probs.max(1)) if len(outputs.log_probs) else np.zeros(0),
        f"{SCORE_PREFIX}energy": outputs.energy,
        f"{SCORE_PREFIX}mahalanobis": distance,
        f"{SCORE_PREFIX}relative_mahalanobis": relative,
    })


def threshold_at_frr(known_scores: np.ndarray, frr: float) -> float:
    """The threshold flagging at most a share `frr` of `known_scores` (flagged: score > threshold): their
    (1 - frr) quantile, taken at an observed value."""
    if not 0.0 <= frr < 1.0:
        raise ValueError(f"frr={frr!r}: the false-rejection rate must lie in [0, 1)")
    known_scores = np.asarray(known_scores, dtype=float)
    if not len(known_scores):
        raise DataError("no known images to choose the threshold on; the run's validation split is empty")
    return float(np.quantile(known_scores, 1.0 - frr, method="higher"))


@dataclass
class OpenSetModel:
    """A finished run made open-set: the loaded run, its training prior (for the LLR), the feature density of
    its training images and, per score, the threshold at the false-rejection rate `frr` on `calibration`."""
    run: LoadedRun
    prior: np.ndarray
    density: FeatureDensity
    thresholds: dict[str, float]
    frr: float
    calibration: str = CALIBRATION_SPLIT
    device: str = "cpu"
    batch_size: int = 64
    notes: list[str] = field(default_factory=list)
    calibration_scored: pd.DataFrame | None = None  # `score` of the `calibration` images the thresholds came from

    @property
    def generators(self) -> list[str]:
        return self.run.generators

    def dataset(self, frame: pd.DataFrame, data=None, on_bad: str | None = None) -> ImageDataset:
        """An evaluation `ImageDataset` of rows, with the run's input policy, crop size and patch grid."""
        c = self.run.config
        with warnings.catch_warnings():  # a file the run's data skips was listed when the run was trained
            warnings.simplefilter("ignore", UserWarning)
            return ImageDataset(frame, self.run.data if data is None else data, policy=c.input_policy,
                                size=c.image_size, train=False, patches=c.test_patches, cache="memory", on_bad=on_bad,
                                progress=False)

    def outputs(self, dataset: ImageDataset, bar=None) -> Outputs:
        return model_outputs(self.run.technique, dataset, self.device, self.batch_size, bar=bar)

    def score(self, outputs: Outputs) -> pd.DataFrame:
        """The rows `outputs` kept with pred, p_ / logp_ / llr_ per generator and the three unknown scores."""
        gens = self.generators
        frame = outputs.frame.reset_index(drop=True)
        out = pd.DataFrame({"path": frame["path"].to_numpy()})
        for column in ("split", "generator", "subclass"):
            if column in frame:
                out[column] = frame[column].to_numpy()
        lp = outputs.log_probs
        out["pred"] = [gens[i] for i in lp.argmax(1)] if len(lp) else []
        llr = log_likelihood_ratios(lp, self.prior) if len(lp) else np.zeros((0, len(gens)))
        for i, g in enumerate(gens):
            out[f"p_{g}"] = np.exp(lp[:, i])
        for i, g in enumerate(gens):
            out[f"logp_{g}"] = lp[:, i]
        for i, g in enumerate(gens):
            out[f"llr_{g}"] = llr[:, i]
        return pd.concat([out, unknown_scores(outputs, self.density)], axis=1)

    def score_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`score` of rows of the run's data (any split, the `unknown` one too)."""
        return self.score(self.outputs(self.dataset(frame)))

    def flag(self, scored: pd.DataFrame, score: str = DEFAULT_SCORE) -> np.ndarray:
        """True where `score` lies above its threshold: the image is flagged as from an unknown generator."""
        return scored[f"{SCORE_PREFIX}{_check_score(score)}"].to_numpy() > self.thresholds[score]


def _check_score(score: str) -> str:
    if score not in SCORES:
        raise ValueError(f"unknown open-set score {score!r}; valid: {', '.join(SCORES)}")
    return score


def fit_open_set(run: str | os.PathLike | LoadedRun, frr: float = DEFAULT_FRR, calibration: str = CALIBRATION_SPLIT,
                 device: str = "cpu", batch_size: int = 64, data_root: str | os.PathLike | None = None,
                 cache: dict | None = None) -> OpenSetModel:
    """Make a finished run open-set: load its kept state (`runfolder.load_run`, weights_only), fit the feature
    density on its training images and choose every score's threshold on `calibration` (default `val`) at the
    false-rejection rate `frr`. data_root: where the run's data lies now, if it moved."""
    loaded = run if isinstance(run, LoadedRun) else load_run(run, data_root=data_root, device=device, cache=cache)
    data = loaded.data
    prior, note = training_prior(loaded.dir)
    notes = [note] if note else []
    model = OpenSetModel(loaded, np.array([prior[g] for g in loaded.generators]), FeatureDensity(), {}, frr,
                         calibration, device, batch_size, notes)
    train = data.split("train")  # the known generators on seen content (also for a technique trained on ft_train)
    fitted = model.outputs(model.dataset(train))
    model.density.fit(fitted.features, data.labels(fitted.frame)["generator"])
    known = data.split(calibration)
    if not len(known):
        raise DataError(f"run {loaded.dir}: its split {calibration!r} is empty, so no threshold can be chosen on it; "
                        "use calibration='val' or a run whose data has a validation split")
    scored = model.calibration_scored = model.score(model.outputs(model.dataset(known)))
    model.thresholds = {s: threshold_at_frr(scored[f"{SCORE_PREFIX}{s}"].to_numpy(), frr) for s in SCORES}
    return model


# --- metrics -----------------------------------------------------------------------------------------------
def oscr_curve(correct_known, known_scores, unknown_scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rate of unknowns, correct-classification rate of knowns, thresholds), from accepting
    nothing (0, 0) to accepting everything (1, closed-set accuracy); an image is accepted when its score is at
    most the threshold."""
    correct = np.asarray(correct_known, dtype=bool)
    known, unknown = np.asarray(known_scores, float), np.asarray(unknown_scores, float)
    if not len(known) or not len(unknown):
        raise DataError("OSCR needs known and unknown images")
    thresholds = np.unique(np.concatenate([known, unknown]))
    ccr = np.searchsorted(np.sort(known[correct]), thresholds, side="right") / len(known)
    fpr = np.searchsorted(np.sort(unknown), thresholds, side="right") / len(unknown)
    return np.r_[0.0, fpr], np.r_[0.0, ccr], np.r_[-np.inf, thresholds]


def oscr(correct_known, known_scores, unknown_scores) -> float:
    """The area under `oscr_curve` (Chen et al. 2021)."""
    fpr, ccr, _ = oscr_curve(correct_known, known_scores, unknown_scores)
    return float(np.trapezoid(ccr, fpr))


# image codes for the bootstrap: one array carries whether an image is unknown and whether a known one is right
_UNKNOWN, _WRONG, _RIGHT = 0, 1, 2


def _codes(scored: pd.DataFrame, known: np.ndarray) -> np.ndarray:
    correct = (scored["pred"] == scored["generator"]).to_numpy()
    return np.where(~known, _UNKNOWN, np.where(correct, _RIGHT, _WRONG))


def _auroc(codes: np.ndarray, scores: np.ndarray) -> float:
    unknown = codes == _UNKNOWN
    n_unknown, n_known = int(unknown.sum()), int((~unknown).sum())
    if not n_unknown or not n_known:
        return np.nan
    return float((rankdata(scores)[unknown].sum() - n_unknown * (n_unknown + 1) / 2) / (n_unknown * n_known))


def _oscr(codes: np.ndarray, scores: np.ndarray) -> float:
    known = codes != _UNKNOWN
    if not known.any() or known.all():
        return np.nan
    return oscr(codes[known] == _RIGHT, scores[known], scores[~known])


def open_set_metrics(scored: pd.DataFrame, known: np.ndarray, thresholds: dict[str, float] | None = None,
                     scores: Sequence[str] = SCORES, n_boot: int = 200, seed: int = 0, alpha: float = 0.05,
                     generators: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per score: AUROC (known vs unknown) and OSCR with bootstrap intervals, the share of unknowns
    flagged and of knowns rejected at the threshold, and the knowns' closed-set accuracy and balanced accuracy
    without rejection and at the threshold (a rejected known counts as wrong).

    scored: `OpenSetModel.score` rows (pred, generator, score_*); known: True for images of known generators.
    """
    known = np.asarray(known, dtype=bool)
    codes = _codes(scored, known)
    truth = scored["generator"].to_numpy()[known]
    pred = scored["pred"].to_numpy()[known]
    rows = []
    for s in scores:
        values = scored[f"{SCORE_PREFIX}{_check_score(s)}"].to_numpy(dtype=float)
        if np.isnan(values).any():
            continue
        auroc = bootstrap_ci(codes, values, _auroc, n_boot=n_boot, seed=seed, alpha=alpha)
        area = bootstrap_ci(codes, values, _oscr, n_boot=n_boot, seed=seed, alpha=alpha)
        row = {"score": s, "auroc": auroc.estimate, "auroc_low": auroc.low, "auroc_high": auroc.high,
               "oscr": area.estimate, "oscr_low": area.low, "oscr_high": area.high,
               "known_images": int(known.sum()), "unknown_images": int((~known).sum()),
               "accuracy": float(np.mean(pred == truth)), "balanced_accuracy": balanced_accuracy(truth, pred)}
        if thresholds is not None:
            flagged = values > thresholds[s]
            at = np.where(flagged[known], "<unknown>", pred)
            row.update(threshold=thresholds[s], unknown_flagged=float(flagged[~known].mean()),
                       known_rejected=float(flagged[known].mean()), accuracy_at_threshold=float(np.mean(at == truth)),
                       balanced_accuracy_at_threshold=balanced_accuracy(truth, at))
        rows.append(row)
    return pd.DataFrame(rows)


def balanced_accuracy(truth, pred) -> float:
    """Balanced accuracy over the true classes (mean recall; scikit-learn's balanced_accuracy_score), a prediction
    outside them ("<unknown>", a generator the images do not hold) counting as wrong, without its warning."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    return float(np.mean([np.mean(pred[truth == g] == g) for g in np.unique(truth)]))


def open_set_frame(model: OpenSetModel, splits: Sequence[str] = ("test", "unknown")) -> pd.DataFrame:
    """Scored rows (`OpenSetModel.score`) of the run's splits, with `known` (a generator the run trained on) and
    `content_seen` (the image's subclass was trained on)."""
    data = model.run.data
    frame = pd.concat([data.split(s) for s in splits], ignore_index=True)
    if not len(frame):
        raise DataError(f"run {model.run.dir} has no images in splits {list(splits)}")
    scored = model.score_frame(frame)
    scored["known"] = scored["generator"].isin(model.generators).to_numpy()
    scored["content_seen"] = scored["subclass"].isin(data.subclasses).to_numpy()
    return scored


def open_set_table(runs: dict[str, Sequence[str | os.PathLike]], frr: float = DEFAULT_FRR, n_boot: int = 200,
                   device: str = "cpu", seed: int = 0, calibration: str = CALIBRATION_SPLIT
                   ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """(one row per arm, rotation and score: `open_set_metrics` on known test images (unseen content) and the
    unknown split, thresholds at `frr` on `calibration`; the scored frames per run folder) for runs trained with
    `unknown_generators` (each run: its rotation of held-out subclass and left-out generator(s))."""
    rows, frames = [], {}
    for name, dirs in runs.items():
        for d in dirs:
            model = fit_open_set(d, frr=frr, calibration=calibration, device=device)
            scored = open_set_frame(model)
            frames[str(d)] = scored
            c = model.run.config
            table = open_set_metrics(scored, scored["known"].to_numpy(), model.thresholds, n_boot=n_boot, seed=seed)
            table["known_shift_auroc"] = [known_shift_auroc(model.calibration_scored, scored, s) for s in table["score"]]
            rows.append(table.assign(arm=name, heldout=c.heldout.key, unknown="+".join(c.unknown_generators),
                                     seed=c.seed, run=str(d)))
    table = pd.concat(rows, ignore_index=True)
    first = ["arm", "heldout", "unknown", "seed", "score"]
    table = table[first + [c for c in table.columns if c not in first]]
    where = "in-distribution validation" if calibration == "val" else "the validation subclass"
    table.attrs["caption"] = (
        f"Open-set attribution: known generators on the held-out subclass against left-out generators (all their "
        f"images); AUROC and OSCR with 95 % bootstrap intervals over images; thresholds at a "
        f"{frr:.0%} false-rejection rate on known images of {where}; "
        "accuracy_at_threshold counts a rejected known as wrong; known_shift_auroc: the score's AUROC for known "
        f"test images (unseen content) against the known images of {where} (0.5: blind to content).")
    return table, frames


def known_shift_auroc(calibration: pd.DataFrame, scored: pd.DataFrame, score: str = DEFAULT_SCORE) -> float:
    """How strongly `score` flags a change of content alone: its AUROC for the known test images of `scored`
    (`open_set_frame`: the held-out subclass) against the known `calibration` images (`OpenSetModel.
    calibration_scored`). 0.5: the score ignores content; near 1: known generators on new content look as unknown
    as a new generator does, which caps the AUROC for unknown generators whose images show seen content."""
    known = scored[scored["known"] & ~scored["content_seen"]]
    column = f"{SCORE_PREFIX}{_check_score(score)}"
    values = np.r_[known[column].to_numpy(float), calibration[column].to_numpy(float)]
    # the new-content knowns play the unknowns' part in `_auroc`
    return _auroc(np.r_[np.full(len(known), _UNKNOWN), np.full(len(calibration), _RIGHT)], values)


def auroc_by_content(scored: pd.DataFrame, score: str = DEFAULT_SCORE) -> pd.DataFrame:
    """AUROC of `score` for unknowns on seen and on unseen content, each against all known test images."""
    known = scored[scored["known"]]
    rows = []
    for seen, part in scored[~scored["known"]].groupby("content_seen"):
        both = pd.concat([known, part])
        rows.append({"unknown content": "seen" if seen else "unseen", "unknown_images": len(part),
                     "auroc": _auroc(np.where(both["known"], _RIGHT, _UNKNOWN),
                                     both[f"{SCORE_PREFIX}{score}"].to_numpy(float))})
    return pd.DataFrame(rows)



def by_content_table(table: pd.DataFrame, frames: dict[str, pd.DataFrame], score: str = DEFAULT_SCORE) -> pd.DataFrame:
    """`auroc_by_content` of every run of `open_set_table` (its table and scored frames), with its arm and
    left-out generator."""
    return pd.concat([auroc_by_content(frames[r.run], score).assign(arm=r.arm, heldout=r.heldout, unknown=r.unknown,
                                                                    seed=r.seed)
                      for r in table[table["score"] == score].itertuples()], ignore_index=True)


_METRICS = {"auroc": _auroc, "oscr": _oscr}


def _pair(scored: pd.DataFrame, reference: pd.DataFrame, score: str, paths: pd.Index | None = None) -> np.ndarray:
    """(N, 4): the image codes of two runs' scored frames and their `score`, image by image (in `paths`' order,
    default `scored`'s)."""
    a = scored.set_index("path")
    a = a if paths is None else a.loc[paths]
    b = reference.set_index("path").loc[a.index]
    column = f"{SCORE_PREFIX}{_check_score(score)}"
    return np.stack([_codes(a, a["known"].to_numpy()), _codes(b, b["known"].to_numpy()),
                     a[column].to_numpy(float), b[column].to_numpy(float)], axis=1)


def paired_difference(scored: pd.DataFrame, reference: pd.DataFrame, metric: str = "auroc", score: str = DEFAULT_SCORE,
                      n_boot: int = 200, seed: int = 0, alpha: float = 0.05) -> Interval:
    """metric (auroc | oscr) of `scored` minus that of `reference` on the same images (two runs of one rotation and
    left-out generator: `open_set_frame`), with a paired percentile bootstrap: each replicate resamples the
    images once and scores both runs on them (the draws of `stats.bootstrap_ci`, all replicates scored at once)."""
    pairs = {("", ""): [_pair(scored, reference, score)]}
    n = len(pairs[("", "")][0])
    draws = {("", ""): np.random.default_rng(seed).integers(0, n, (n_boot, n))}  # stats.bootstrap_ci's draws
    low, high = np.nanquantile(_pooled(pairs, metric, draws)[:, 1], [alpha / 2, 1 - alpha / 2])
    return Interval(float(_pooled(pairs, metric)[0, 1]), float(low), float(high))


def versus_reference(table: pd.DataFrame, frames: dict[str, pd.DataFrame], reference: str = "baseline",
                     n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Every other arm's AUROC and OSCR minus the reference arm's, paired by image within each rotation, left-out
    generator and seed (`paired_difference`), per score."""
    rows = []
    keys = ["heldout", "unknown", "seed", "score"]
    refs = table[table["arm"] == reference].set_index(keys)["run"]
    for r in table[table["arm"] != reference].itertuples():
        key = (r.heldout, r.unknown, r.seed, r.score)
        if key not in refs.index:
            continue
        row = {"arm": r.arm, "heldout": r.heldout, "unknown": r.unknown, "seed": r.seed, "score": r.score}
        for metric in ("auroc", "oscr"):
            d = paired_difference(frames[r.run], frames[refs[key]], metric, r.score, n_boot, seed)
            row.update({f"{metric} - {reference}": d.estimate, f"{metric} low": d.low, f"{metric} high": d.high})
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["caption"] = (f"Each arm minus {reference} on the same images (paired bootstrap over images, 95 %): "
                            "an interval above 0 says the arm tells unknown generators apart better.")
    return out


def _resampled(metric: str, codes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """metric of every row of (B, N) resampled image codes and scores: AUROC from the rows' ranks at once."""
    if metric == "auroc":
        unknown = codes == _UNKNOWN
        n_unknown, n_known = unknown.sum(1), (~unknown).sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            auc = ((rankdata(scores, axis=1) * unknown).sum(1) - n_unknown * (n_unknown + 1) / 2) / (n_unknown * n_known)
        return np.where((n_unknown > 0) & (n_known > 0), auc, np.nan)
    return np.array([_METRICS[metric](c, v) for c, v in zip(codes, scores)])


def _pooled(strata: dict[tuple[str, str], list[np.ndarray]], metric: str, draws: dict | None = None) -> np.ndarray:
    """(B, 2): (metric of the arm, metric of the arm - the reference's) of `_pair`s grouped by rotation, on the
    images of `draws` (rotation -> (B, N) resampled row indices; None: all images, B = 1): the mean over each
    rotation's seeds, then over rotations. A pair of a run with itself is scored once."""
    per_rotation = []
    for rotation, pairs in strata.items():
        idx = np.arange(len(pairs[0]))[None] if draws is None else draws[rotation]
        per_seed = []
        for p in pairs:
            codes, scores = p[:, :2].astype(int)[idx], p[:, 2:][idx]  # (B, N, 2)
            a = _resampled(metric, codes[..., 0], scores[..., 0])
            same = np.array_equal(p[:, 0], p[:, 1]) and np.array_equal(p[:, 2], p[:, 3])
            b = a if same else _resampled(metric, codes[..., 1], scores[..., 1])
            per_seed.append(np.stack([a, a - b], axis=1))
        per_rotation.append(np.mean(per_seed, axis=0))
    return np.mean(per_rotation, axis=0)


def pooled_versus_reference(table: pd.DataFrame, frames: dict[str, pd.DataFrame], reference: str = "baseline",
                            n_boot: int = 200, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """One row per arm and score, over every rotation (held-out subclass x left-out generator) and seed the arm
    shares with `reference`: the arm's mean AUROC and OSCR, and their difference from the reference's on the same
    images, each with a paired, stratified percentile bootstrap interval: a replicate resamples each rotation's
    images once (the same images for every seed and both arms) and averages over the rotations' seeds, then over
    the rotations. The reference's own row has its metrics and no difference."""
    keys = ["heldout", "unknown", "seed", "score"]
    refs = table[table["arm"] == reference].set_index(keys)["run"]
    rows = []
    for (arm, score), part in table.groupby(["arm", "score"], sort=False):
        strata: dict[tuple[str, str], list[np.ndarray]] = {}
        paths: dict[tuple[str, str], pd.Index] = {}
        for r in part.itertuples():
            if (r.heldout, r.unknown, r.seed, score) not in refs.index:
                continue
            rotation = (r.heldout, r.unknown)
            paths.setdefault(rotation, pd.Index(frames[r.run]["path"]))
            strata.setdefault(rotation, []).append(
                _pair(frames[r.run], frames[refs[(r.heldout, r.unknown, r.seed, score)]], score, paths[rotation]))
        if not strata:
            continue
        row = {"arm": arm, "score": score, "rotations": len(strata), "runs": sum(map(len, strata.values()))}
        sizes = {rotation: len(pairs[0]) for rotation, pairs in strata.items()}
        for metric in _METRICS:
            rng = np.random.default_rng(seed)  # the same resamples for every arm, score and metric
            point = _pooled(strata, metric)[0]
            reps = _pooled(strata, metric, {r: rng.integers(0, n, (n_boot, n)) for r, n in sizes.items()})
            low, high = np.nanquantile(reps, [alpha / 2, 1 - alpha / 2], axis=0)
            row.update({metric: point[0], f"{metric}_low": low[0], f"{metric}_high": high[0]})
            if arm != reference:
                row.update({f"{metric} - {reference}": point[1], f"{metric} - {reference} low": low[1],
                            f"{metric} - {reference} high": high[1]})
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["caption"] = (
        f"Each arm over every rotation (held-out subclass x left-out generator) and seed it shares with {reference}: "
        f"mean AUROC and OSCR, and the difference from {reference} on the same images, with 95 % paired bootstrap "
        "intervals (images resampled within each rotation, the same images for every seed and both arms; rotations "
        "averaged). A difference interval above 0: the arm tells unknown generators apart better.")
    return out
