"""Subclass leakage: how much subclass (content) information a model's frozen features still carry.

A linear probe (scikit-learn's LogisticRegression on standardised features) is fitted on the features of
the training split and scored on the validation split, both under the evaluation transform (centre crop or
resize, no augmentation). Chance is 1 / n_subclasses (1/7 on the benchmark); the majority-class rate of the
validation split is reported too, since unbalanced splits can beat 1/n without information. Lower accuracy:
the technique removed more subclass information from the features.
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

from ..data import ImageDataset, collate_patches
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


def probe_model(model: nn.Module, data, policy: str = "crop", size: int = 64, batch_size: int = 64,
                max_images: int | None = None, patches: int = 1, **probe_kwargs) -> dict:
    """Subclass probe of a model's frozen features on `data`'s train and val splits (each a random sample of
    at most `max_images` rows, fixed seed, when given: a cheaper, noisier probe)."""

    def rows(split: str):
        frame = data.split(split)
        return frame if max_images is None or len(frame) <= max_images else frame.sample(max_images, random_state=0)

    sets = {s: ImageDataset(rows(s), data, policy=policy, size=size, train=False, patches=patches)
            for s in ("train", "val")}
    (ftr, ytr), (fva, yva) = (extract_features(model, sets[s], batch_size) for s in ("train", "val"))
    return subclass_probe(ftr, ytr, fva, yva, n_subclasses=len(data.subclasses), **probe_kwargs)


def probe_run(run_dir: str | os.PathLike, data=None, cache: dict | None = None, **probe_kwargs) -> dict:
    """Subclass probe of a finished run's model, under the run's input policy and size (cache: see load_run)."""

    return _probe_loaded(load_run(run_dir, data=data, cache=cache), **probe_kwargs)


def _probe_loaded(run, **probe_kwargs) -> dict:
    out = probe_model(run.model, run.data, policy=run.config.input_policy, size=run.config.image_size,
                      patches=run.config.test_patches, **probe_kwargs)
    return {"technique": run.name, "seed": run.seed, **out}


def probe_table(runs: Mapping[str, Sequence[str | os.PathLike]], data=None, **probe_kwargs) -> pd.DataFrame:
    """Subclass leakage per technique (runs: name -> run folders): probe accuracy mean and std (ddof=1) over
    seeds, chance and majority rate. Per-seed rows in `table.attrs["per_seed"]`. probe_kwargs: see
    `probe_model` (e.g. max_images to probe on fewer images)."""

    rows = [{**_probe_loaded(run, **probe_kwargs), "technique": name} for name, run, _ in iter_runs(runs, data)]
    seeds = pd.DataFrame(rows)
    g = seeds.groupby("technique", sort=False)
    table = pd.DataFrame({"probe_accuracy": g["accuracy"].mean(), "probe_std": g["accuracy"].std(ddof=1).fillna(0.0),
                          "chance": g["chance"].first(), "majority": g["majority"].first(), "seeds": g.size()})
    table.attrs["per_seed"] = seeds
    table.attrs["caption"] = ("Subclass leakage: accuracy of a linear probe on frozen features predicting the "
                              "subclass (val split), mean and std (sample std, ddof=1) over seeds; chance = "
                              "1 / number of subclasses; lower: less subclass information left.")
    return table
