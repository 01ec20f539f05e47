"""Subclass leakage: how much subclass (content) information a model's frozen features still carry.

A linear probe (scikit-learn's LogisticRegression on standardised features) is fitted on the features of
the training split and scored on the validation split, both under the evaluation transform (centre crop or
resize, no augmentation). Lower accuracy: the technique removed more subclass information from the features.

Read it against the right reference. Chance is 1 / n_subclasses (1/7 on the benchmark), and the val split's
majority-class rate is reported too; but on a biased split the generator already tells much of the subclass
(on the benchmark's biased val split a representation that encodes only the generator reaches 0.52), so the
generator-only baseline (`generator_only_accuracy`: each image gets its generator's most frequent training
subclass) is the floor a generator attributor cannot go below. Where subclass and generator are independent
(the embedded benchmark's unbiased variant) the probe needs no such correction: `probe_table(...,
unbiased=root)` probes there too.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from ..data import ImageDataset, collate_patches, load_config_data
from ..errors import DataError
from ..runfolder import iter_runs, load_run
from ..techniques import image_starts, per_image


@torch.no_grad()
def extract_features(model: nn.Module, dataset, batch_size: int = 64, device: str | torch.device = "cpu"
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, D), subclass indices (N,)) of every item of `dataset`, the model in eval mode; an image of
    several patches (`ImageDataset(..., patches=k)`) gets the mean of its patches' features."""
    was_training = model.training
    model.eval()
    feats, labels = [], []
    try:
        for batch in torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                                 collate_fn=collate_patches):
            f = model.features(batch["x"].to(device)).float().cpu()
            owner = batch.get("owner")
            if owner is not None:
                f = per_image(f, owner)
                batch = {"subclass": batch["subclass"][image_starts(owner)]}
            feats.append(f)
            labels.append(batch["subclass"])
    finally:
        model.train(was_training)
    if not feats:
        return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


def subclass_probe(train_features: np.ndarray, train_subclass: np.ndarray, val_features: np.ndarray,
                   val_subclass: np.ndarray, n_subclasses: int, C: float = 1.0, max_iter: int = 2000,
                   seed: int = 0) -> dict:
    """Fit the linear probe on train features, score it on val features.

    Returns accuracy, chance (1 / n_subclasses), majority (the val split's largest-class share), n_train, n_val.
    """
    for name, y in (("train", train_subclass), ("val", val_subclass)):
        if len(y) and (y.min() < 0 or y.max() >= n_subclasses):
            raise DataError(f"{name} features carry subclass labels outside 0..{n_subclasses - 1} (a held-out "
                            "subclass?); probe only the train and val splits")
    if len(np.unique(train_subclass)) < 2 or not len(val_subclass):
        raise DataError("the subclass probe needs train features of at least two subclasses and some val features")
    # newton-cg: the same L2-regularised multinomial optimum as the default lbfgs, reached in ~16 iterations
    # instead of ~300 on these nearly separable features (0.2 s against 4 s a run, the same accuracy)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, solver="newton-cg",
                                                               random_state=seed))
    probe.fit(train_features, train_subclass)
    accuracy = float(probe.score(val_features, val_subclass))
    majority = float(np.bincount(val_subclass, minlength=n_subclasses).max() / len(val_subclass))
    return {"accuracy": accuracy, "chance": 1.0 / n_subclasses, "majority": majority,
            "n_train": int(len(train_subclass)), "n_val": int(len(val_subclass))}


def generator_only_accuracy(fit_generator: np.ndarray, fit_subclass: np.ndarray, generator: np.ndarray,
                            subclass: np.ndarray) -> float:
    """Subclass accuracy from the generator label alone: each (generator, subclass) pair of the scored rows is
    predicted as its generator's most frequent subclass among the fit rows (ties: the smallest subclass label;
    a generator without fit rows: the most frequent subclass of all fit rows). What a probe on features that
    encode the generator and nothing else reaches when fitted on the fit rows."""
    fit_generator, fit_subclass = np.asarray(fit_generator), np.asarray(fit_subclass)
    generator, subclass = np.asarray(generator), np.asarray(subclass)
    if not len(fit_subclass) or not len(subclass):
        raise DataError("generator_only_accuracy needs fit rows and scored rows")
    labels, codes = np.unique(fit_subclass, return_inverse=True)   # sorted: argmax picks the smallest in a tie
    overall = labels[np.bincount(codes).argmax()]
    majority = {g: labels[np.bincount(codes[fit_generator == g], minlength=len(labels)).argmax()]
                for g in np.unique(fit_generator)}
    guess = np.array([majority.get(g, overall) for g in generator.tolist()])
    return float(np.mean(guess == subclass))


def probe_model(model: nn.Module, data, policy: str = "crop", size: int = 64, batch_size: int = 64,
                max_images: int | None = None, patches: int = 1, **probe_kwargs) -> dict:
    """Subclass probe of a model's frozen features on `data`'s train and val splits (each a random sample of
    at most `max_images` rows, fixed seed, when given: a cheaper, noisier probe): `subclass_probe`'s numbers
    and generator_only (`generator_only_accuracy` fitted on the same train rows, scored on the same val rows)."""

    def rows(split: str):
        frame = data.split(split)
        return frame if max_images is None or len(frame) <= max_images else frame.sample(max_images, random_state=0)

    sets = {s: ImageDataset(rows(s), data, policy=policy, size=size, train=False, patches=patches)
            for s in ("train", "val")}
    (ftr, ytr), (fva, yva) = (extract_features(model, sets[s], batch_size) for s in ("train", "val"))
    out = subclass_probe(ftr, ytr, fva, yva, n_subclasses=len(data.subclasses), **probe_kwargs)
    # the datasets' own frames: the rows (in order) their features came from, even if undecodable ones were skipped
    gtr, gva = (data.labels(sets[s].frame)["generator"] for s in ("train", "val"))
    return {**out, "generator_only": generator_only_accuracy(gtr, ytr, gva, yva)}


def probe_run(run_dir: str | os.PathLike, data=None, cache: dict | None = None,
              unbiased: str | os.PathLike | None = None, **probe_kwargs) -> dict:
    """Subclass probe of a finished run's model, under the run's input policy and size (cache: see load_run);
    with `unbiased` (the unbiased variant's folder), also on that variant's train and val splits."""

    return _probe_loaded(load_run(run_dir, data=data, cache=cache), _UnbiasedData(unbiased), **probe_kwargs)


class _UnbiasedData:
    """The unbiased variant's StudyData for each run: loaded with the run's own held-out subclasses and
    validation share (runs of several rotations), once per such setting."""

    def __init__(self, root: str | os.PathLike | None) -> None:
        self.root, self.loaded = root, {}

    def __call__(self, run):
        if self.root is None:
            return None
        config = run.config.replace(data=str(self.root))
        key = (tuple(config.heldout), config.val_fraction, config.val_subclass, config.on_bad)
        if key not in self.loaded:
            self.loaded[key] = load_config_data(config)
        data = self.loaded[key]
        if list(data.generators) != list(run.generators):
            raise DataError(f"the unbiased variant {self.root} has generators {data.generators}, run {run.dir} has "
                            f"{run.generators}: pass the unbiased twin of the run's own data")
        return data


def _probe_loaded(run, unbiased: _UnbiasedData, **probe_kwargs) -> dict:
    kw = dict(policy=run.config.input_policy, size=run.config.image_size, patches=run.config.test_patches)
    out = {"arm": run.name, "seed": run.seed, "heldout": run.config.heldout.key,
           **probe_model(run.model, run.data, **kw, **probe_kwargs),
           "unbiased_accuracy": float("nan"), "unbiased_generator_only": float("nan")}
    other = unbiased(run)
    if other is not None:
        u = probe_model(run.model, other, **kw, **probe_kwargs)
        out.update(unbiased_accuracy=u["accuracy"], unbiased_generator_only=u["generator_only"])
    return out


def probe_table(runs: Mapping[str, Sequence[str | os.PathLike]], data=None, unbiased: str | os.PathLike | None = None,
                **probe_kwargs) -> pd.DataFrame:
    """Subclass leakage per technique (runs: name -> run folders): probe accuracy mean and std (ddof=1) over
    seeds, against chance, the val split's majority rate and the generator-only baseline; with `unbiased`
    (the unbiased variant's folder, `attrlib.study.session.unbiased_variant(root)`; a user's folder has
    none), the probe's accuracy there too (unbiased_accuracy, unbiased_std) and its generator-only baseline.
    Per-seed rows in `table.attrs["per_seed"]`. probe_kwargs: see `probe_model` (e.g. max_images to probe on
    fewer images)."""

    source = _UnbiasedData(unbiased)
    rows = [{**_probe_loaded(run, source, **probe_kwargs), "arm": name} for name, run, _ in iter_runs(runs, data)]
    seeds = pd.DataFrame(rows)
    g = seeds.groupby("arm", sort=False)
    table = pd.DataFrame({"probe_accuracy": g["accuracy"].mean(), "probe_std": g["accuracy"].std(ddof=1).fillna(0.0),
                          "chance": g["chance"].first(), "majority": g["majority"].first(),
                          "generator_only": g["generator_only"].first(),
                          "unbiased_accuracy": g["unbiased_accuracy"].mean(),
                          "unbiased_std": g["unbiased_accuracy"].std(ddof=1).fillna(0.0),
                          "unbiased_generator_only": g["unbiased_generator_only"].first(), "seeds": g.size()})
    if unbiased is None:
        table["unbiased_std"] = float("nan")
    table.attrs["per_seed"] = seeds
    table.attrs["caption"] = (
        "Subclass leakage: accuracy of a linear probe on frozen features predicting the subclass (fitted on the "
        "train split, scored on val), mean and std (sample std, ddof=1) over runs (seeds, rotations); lower: less "
        "subclass information left. References: chance = 1 / number of subclasses; majority = the val split's largest "
        "subclass share; generator_only = the accuracy from the true generator label alone (each val image gets "
        "its generator's most frequent train subclass). On a biased split the generator already tells much of "
        "the subclass, so leakage beyond the generator is probe_accuracy above generator_only, not above chance. "
        + ("unbiased_accuracy: the same probe on the unbiased variant's train and val images, where subclass and "
           "generator are independent (its generator_only, unbiased_generator_only, is about chance)."
           if unbiased is not None else "No unbiased variant (not the embedded benchmark): unbiased_* are NaN."))
    return table
