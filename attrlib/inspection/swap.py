"""Content swap: does a prediction follow the generator or the content? A causal test only a simulator allows.

The same clean images of every subclass are rendered through every generator, each with its instance of one
cell (default: the held-out cell, the generator models the run never trained on, as on its test images), and
a run predicts each render (`known_images` files read by the run's `ImageDataset`: its crop or resize and
patch grid). Per (content subclass, rendering generator) cell:

    follows_generator   share of predictions equal to the rendering generator
    follows_content     share of predictions among the generators that dominate that subclass in the data's
                        train split (the most training images of it; ties: any of them), where the subclass
                        is confounded with the generator (`dominant_generators`: not in the unbiased variant)

Where the rendering generator is not among the content's dominant ones (a *conflict* cell) the two readings
disagree; the summary pools those cells. A perfect fingerprint reader follows the generator (1.0, content
0.0), a model that reads only content follows the content. Chance (a uniform guess): 1 / n_generators for
follows_generator, |dominant| / n_generators for follows_content. A subclass the train split lacks (the
held-out one) dominates nothing: its cells give the accuracy on held-out content only. A run trained where
content and generator are independent (the oracle) has no conflict cells: its follows_* are NaN.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..data import ImageDataset, collate_patches
from ..runfolder import load_run
from ..simulator.known import benchmark_params
from ..techniques import predict_probs
from .renders import known_images, render_key

CELL_COLUMNS = ("subclass", "generator", "trained", "dominant", "conflict", "n", "follows_generator",
                "follows_content", "chance_generator", "chance_content")


def dominant_generators(frame: pd.DataFrame, generators: Sequence[str] | None = None,
                        min_ratio: float = 2.0) -> dict[str, tuple[str, ...]]:
    """subclass -> the generators with the most rows of it in `frame` (ties: all of them, sorted), for every
    subclass of `frame`. Only where the content is confounded with the generator: when the most frequent
    generator has fewer than `min_ratio` times the rows of the least frequent one among `generators`
    (default: those of `frame`; a generator without the subclass counts 0), the subclass predicts no
    generator and gets () (the unbiased variant, whose cells differ by one image at most)."""
    generators = sorted(set(frame["generator"])) if generators is None else list(generators)
    counts = frame.groupby(["subclass", "generator"]).size().unstack(fill_value=0).reindex(columns=generators,
                                                                                          fill_value=0)
    out = {}
    for sub, per in counts.iterrows():
        top = per.max()
        out[sub] = tuple(sorted(per.index[per == top])) if top >= min_ratio * per.min() and top > 0 else ()
    return out


def swap_outcomes(predictions: pd.DataFrame, dominant: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """One row per image of a content swap: `predictions` (columns subclass = content, generator = rendering
    generator, pred = predicted generator, and item, the clean image's index, where known) with trained,
    dominant, conflict (as in `swap_cells`), follows_generator (1.0 / 0.0) and follows_content (1.0 / 0.0, NaN
    for content without a dominant generator): what `swap_cells` pools and an interval resamples."""
    missing = {"subclass", "generator", "pred"} - set(predictions)
    if missing:
        raise ValueError(f"predictions lack column(s) {sorted(missing)}; give subclass, generator and pred per image")
    dom = predictions["subclass"].map(lambda sub: tuple(dominant.get(sub, ())))
    pred = predictions["pred"].to_numpy()
    has = dom.map(bool).to_numpy()
    return pd.DataFrame({
        "subclass": predictions["subclass"].to_numpy(), "generator": predictions["generator"].to_numpy(),
        "item": predictions["item"].to_numpy() if "item" in predictions else np.arange(len(predictions)),
        "trained": predictions["subclass"].isin(list(dominant)).to_numpy(), "dominant": dom.map("|".join).to_numpy(),
        "conflict": has & np.array([g not in d for g, d in zip(predictions["generator"], dom)], dtype=bool),
        "follows_generator": (pred == predictions["generator"].to_numpy()).astype(float),
        "follows_content": np.where(has, [p in d for p, d in zip(pred, dom)], np.nan).astype(float)})


def swap_cells(predictions: pd.DataFrame, dominant: Mapping[str, Sequence[str]],
               generators: Sequence[str]) -> pd.DataFrame:
    """The tidy table of a content swap: one row per (content subclass, rendering generator) of `predictions`
    (columns subclass = content, generator = rendering generator, pred = predicted generator); `dominant`:
    `dominant_generators` of the training split (a subclass missing from it was not trained on).

    Columns (CELL_COLUMNS): trained (the subclass is in `dominant`), dominant ("a|b", empty for a subclass
    without one), conflict (the rendering generator is not dominant), n, follows_generator, follows_content
    (NaN without a dominant generator), chance_generator (1 / n_generators), chance_content (|dominant| /
    n_generators). The images one by one: `swap_outcomes`.
    """
    images = swap_outcomes(predictions, dominant)
    rows = []
    for (sub, gen), cell in images.groupby(["subclass", "generator"], sort=True):
        dom = cell["dominant"].iat[0]
        rows.append({"subclass": sub, "generator": gen, "trained": bool(cell["trained"].iat[0]), "dominant": dom,
                     "conflict": bool(cell["conflict"].iat[0]), "n": len(cell),
                     "follows_generator": float(cell["follows_generator"].mean()),
                     "follows_content": float(cell["follows_content"].mean()) if dom else float("nan"),
                     "chance_generator": 1.0 / len(generators),
                     "chance_content": len(dominant[sub]) / len(generators) if dom else float("nan")})
    return pd.DataFrame(rows, columns=list(CELL_COLUMNS))


def swap_summary(cells: pd.DataFrame) -> dict:
    """A swap's cells pooled (each weighted by its images): on the conflict cells follows_generator,
    follows_content, follows_neither and their chance levels (NaN without conflict cells: content not
    confounded with the generator, as in the unbiased variant); trained_accuracy and heldout_accuracy =
    follows_generator on every cell of content the training split has, and lacks (the held-out subclass);
    n_conflict images."""
    conflict = cells[cells["conflict"]]
    w = conflict["n"].to_numpy(float)

    def pooled(frame: pd.DataFrame, column: str) -> float:
        n = frame["n"].to_numpy(float)
        return float((frame[column] * n).sum() / n.sum()) if n.sum() else float("nan")

    out = {name: pooled(conflict, name) for name in ("follows_generator", "follows_content", "chance_content")}
    out["chance_generator"] = float(cells["chance_generator"].iloc[0]) if len(cells) else float("nan")
    out["follows_neither"] = 1.0 - out["follows_generator"] - out["follows_content"] if w.sum() else float("nan")
    trained = cells["trained"].astype(bool)
    out["trained_accuracy"] = pooled(cells[trained], "follows_generator")
    out["heldout_accuracy"] = pooled(cells[~trained], "follows_generator")
    out["n_conflict"] = int(w.sum())
    return out


def swap_predictions(predict: Callable[[torch.Tensor], torch.Tensor], frame: pd.DataFrame, data, generators,
                     policy: str = "crop", size: int = 64, patches: int = 1, batch_size: int = 64,
                     device: str | torch.device = "cpu") -> pd.DataFrame:
    """`frame` (image files, e.g. `known_images`) with a `pred` column: the generator `predict(x) -> logits`
    gives each image, under the input policy, size and test patch grid of a run (patches' log-probabilities
    averaged, as the engine predicts)."""
    ds = ImageDataset(frame, data, policy=policy, size=size, train=False, patches=patches)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate_patches)
    probs = predict_probs(predict, loader, torch.device(device), len(generators))
    return ds.frame.assign(pred=[generators[i] for i in probs.argmax(1)])


def swap_contents(data) -> list[str]:
    """The content a swap renders: the training subclasses and the held-out ones (not a validation subclass,
    which is neither trained on nor the test)."""
    return sorted(set(data.split("train")["subclass"]) | set(data.heldout))


def content_swap(run, params: dict, folder: str | os.PathLike, n: int = 6, instance: str | None = None,
                 batch_size: int = 64, renders: pd.DataFrame | None = None) -> pd.DataFrame:
    """The swap cells (`swap_cells`) of one loaded run (`attrlib.runfolder.load_run`) on the benchmark of
    `params` (`attrlib.simulator.known.benchmark_params`): n clean images of each of `swap_contents`,
    each rendered through every generator with its instance of the cell `instance` (default: the run's first
    held-out subclass), written under `folder` (or `renders`, such a frame made before). Dominance: the
    data's train split. Columns: arm, seed, instance, then CELL_COLUMNS."""
    return _swap(run, params, folder, n, instance, batch_size, renders)[0]


def _swap(run, params: dict, folder: str | os.PathLike, n: int, instance: str | None, batch_size: int,
          renders: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`content_swap`'s cells and the images they pool (`swap_outcomes`), each with arm, seed and instance."""
    instance = instance or run.data.heldout[0]
    if renders is None:
        renders = known_images(params, swap_contents(run.data), run.generators, n, folder, instance=instance)
    pred = swap_predictions(run.technique.predict, renders, run.data, run.generators, run.config.input_policy,
                            run.config.image_size, run.config.test_patches, batch_size)
    dominant = dominant_generators(run.data.split("train"), run.generators)
    cells = swap_cells(pred, dominant, run.generators)
    images = swap_outcomes(pred, dominant)
    return tuple(frame.assign(arm=run.name, seed=run.seed, instance=instance)[
        ["arm", "seed", "instance", *frame.columns]] for frame in (cells, images))


def content_swap_table(runs: Mapping[str, Sequence[str | os.PathLike]], data=None, n: int = 6,
                       instance: str | None = None, batch_size: int = 64) -> pd.DataFrame:
    """Content swap per technique (runs: name -> run folders): the `swap_summary` of each run, mean and std
    (ddof=1) over seeds. Runs whose data is not the embedded benchmark's default variant are left out (only
    there is the clean content known); the caption says so. Every run of one benchmark and held-out subclass
    sees the same renders.

    Columns: follows_generator, generator_std, follows_content, content_std, follows_neither,
    chance_generator, chance_content, trained_accuracy, heldout_accuracy, n_conflict (images per seed), seeds.
    attrs: per_seed (one `swap_summary` per run), cells (every run's `content_swap` rows), images (every run's
    `swap_outcomes`, with heldout: what `attrlib.reporting.swap_intervals` resamples), caption.
    """
    per_seed, cells, images, skipped, cache = [], [], [], [], {}
    made: dict = {}
    with tempfile.TemporaryDirectory(prefix="attrlib-swap-") as tmp:
        for name, dirs in runs.items():
            for d in dirs:
                run = load_run(d, data=data, cache=cache)
                params = benchmark_params(run.data.root)
                if params is None:
                    skipped.append(name)
                    continue
                inst = instance or run.data.heldout[0]
                key = (render_key(params), tuple(swap_contents(run.data)), tuple(run.generators), inst)
                if key not in made:
                    made[key] = known_images(params, list(key[1]), run.generators, n, Path(tmp) / str(len(made)),
                                             instance=inst)
                c, i = (f.assign(arm=name) for f in _swap(run, params, tmp, n, inst, batch_size, made[key]))
                cells.append(c)
                images.append(i.assign(heldout=run.config.heldout.key))
                per_seed.append({"arm": name, "seed": run.seed, "heldout": run.config.heldout.key,
                                 **swap_summary(c)})
    seeds = pd.DataFrame(per_seed, columns=["arm", "seed", "heldout", "follows_generator", "follows_content",
                                            "chance_generator", "chance_content", "follows_neither",
                                            "trained_accuracy", "heldout_accuracy", "n_conflict"])
    g = seeds.groupby("arm", sort=False)
    table = pd.DataFrame({"follows_generator": g["follows_generator"].mean(),
                          "generator_std": g["follows_generator"].std(ddof=1).fillna(0.0),
                          "follows_content": g["follows_content"].mean(),
                          "content_std": g["follows_content"].std(ddof=1).fillna(0.0),
                          "follows_neither": g["follows_neither"].mean(),
                          "chance_generator": g["chance_generator"].first(),
                          "chance_content": g["chance_content"].first(),
                          "trained_accuracy": g["trained_accuracy"].mean(),
                          "heldout_accuracy": g["heldout_accuracy"].mean(),
                          "n_conflict": g["n_conflict"].first(), "seeds": g.size()})
    table.attrs["per_seed"] = seeds
    table.attrs["cells"] = pd.concat(cells, ignore_index=True) if cells else pd.DataFrame(
        columns=["arm", "seed", "instance", *CELL_COLUMNS])
    table.attrs["images"] = pd.concat(images, ignore_index=True) if images else pd.DataFrame(
        columns=["arm", "seed", "instance", "subclass", "generator", "item", "trained", "dominant", "conflict",
                 "follows_generator", "follows_content", "heldout"])
    table.attrs["caption"] = _swap_caption(table, n, instance, sorted(set(skipped)))
    return table


def _swap_caption(table: pd.DataFrame, n: int, instance: str | None, skipped: list[str]) -> str:
    cell = f"the {instance} cell" if instance else "the held-out cell"
    text = (f"Content swap (simulator only): the same {n} clean images of every subclass rendered through every "
            f"generator, each with its instance of {cell} (clean content and generator are set independently). "
            "On the conflict cells (the rendering generator is not the one that dominates the content in the "
            "training split), follows_generator = share of predictions equal to the rendering generator "
            "(a fingerprint reader: 1), follows_content = share equal to the content's dominant generator, any "
            "of them when tied (a content reader: 1); mean and std (ddof=1) over runs (seeds, rotations), images "
            "pooled over cells.")
    if len(table):
        chance = table["chance_content"].dropna()
        text += (f" Chance (a uniform guess): {table['chance_generator'].iloc[0]:.2f} for follows_generator, "
                 + (f"{chance.iloc[0]:.2f} for follows_content (chance_content per technique). " if len(chance) else "")
                 + "NaN: no content confounded with the generator in the run's training split (the unbiased "
                 "variant). trained_accuracy, heldout_accuracy: the share of renders attributed to their rendering "
                 "generator, on every cell of trained content and of the held-out content.")
    if skipped:
        text += (f" Left out (data not the embedded benchmark's default variant, clean content unknown): "
                 f"{', '.join(skipped)}.")
    return text
