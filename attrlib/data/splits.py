"""Splits of the study: train / val / test and seed 002's fine-tuning split of the held-out subclass.

- `test` is every image of a held-out subclass; a held-out subclass never reaches `train` or `val`.
- `val` is carved from the training cells (generator x subclass) when the data does not say, a
  `val_fraction` of each cell, keeping at least one training image per cell, so validation has the same
  bias as training (it is the in-distribution check).
- `ft_split` splits `test` 80/20, stratified by generator, with a seed of its own that does not follow the
  run seed: every technique and every seed is then scored on the same `ft_test` images.

Every choice is a function of (seed, generator, subclass, sorted paths) only, so it does not depend on the
order rows were listed in, on the file system, or on which other cells exist.
"""
from __future__ import annotations

import zlib
from typing import Iterable

import numpy as np
import pandas as pd

from ..errors import DataError
from .sources import format_problem

FT_FRACTION = 0.2   # seed 002: 80/20 split of the military-vehicle images
FT_SEED = 0         # fixed, independent of the run seed


def _rng(seed: int, *keys: str) -> np.random.Generator:
    # crc32 is stable across processes (Python's hash() of a str is randomised per process).
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *(zlib.crc32(k.encode()) for k in keys)])


def _pick(paths: pd.Series, n: int, rng: np.random.Generator) -> set:
    """`n` paths chosen at random, independent of the order they come in."""
    ordered = np.sort(paths.to_numpy(dtype=str))
    return set(ordered[rng.permutation(len(ordered))[:n]])


def assign_splits(frame: pd.DataFrame, heldout: Iterable[str], val_fraction: float = 0.2, seed: int = 0,
                  where: str = "the data", ft_fraction: float = FT_FRACTION, ft_seed: int = FT_SEED) -> pd.DataFrame:
    """Fill `split` (rows given "" are decided here) and add `ft_split`; raise DataError on contradictions.

    `frame` needs columns path, generator, subclass, split ("" = undecided) and line (CSV line, 0 if none).
    """
    heldout = tuple(heldout)
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction is {val_fraction!r}; it must be at least 0 and below 1")
    df = frame.reset_index(drop=True).copy()
    present = sorted(df["subclass"].unique())
    absent = [h for h in heldout if h not in present]
    if absent:
        raise DataError(f"held-out subclass(es) {', '.join(map(repr, absent))} do not occur in {where}; "
                        f"subclasses present: {', '.join(present)}. Pass --heldout (or heldout=) with one of them")
    is_held = df["subclass"].isin(heldout)
    errors = []
    leak = df[is_held & df["split"].isin(("train", "val"))]
    if len(leak):
        errors.append(format_problem(f"{len(leak)} row(s) put a held-out subclass into training",
                               [f"{_where_row(r)}: subclass {r.subclass!r} has split {r.split!r}" for r in leak.itertuples()],
                               f"held-out subclass(es) ({', '.join(heldout)}) must be split 'test' (or empty); "
                               "change those splits, or choose a different held-out subclass"))
    stray = df[~is_held & (df["split"] == "test")]
    if len(stray):
        errors.append(format_problem(f"{len(stray)} test row(s) whose subclass is not held out",
                               [f"{_where_row(r)}: subclass {r.subclass!r} has split 'test'" for r in stray.itertuples()],
                               f"the test split is the held-out subclass(es) ({', '.join(heldout) or 'none'}); add the "
                               "subclass to heldout or change those rows' split to train/val"))
    if errors:
        raise DataError(f"{where} has problems:\n" + "\n".join(errors))

    df.loc[is_held, "split"] = "test"
    undecided = df["split"] == ""
    val_paths: set = set()
    for (g, s), cell in df[undecided].groupby(["generator", "subclass"], sort=True):
        n_val = min(len(cell) - 1, int(round(len(cell) * val_fraction)))
        if n_val > 0:
            val_paths |= _pick(cell["path"], n_val, _rng(seed, "val", g, s))
    df.loc[undecided, "split"] = np.where(df.loc[undecided, "path"].isin(val_paths), "val", "train")

    # A generator the model never sees in training cannot be attributed: refuse rather than report chance.
    trained = set(df.loc[df["split"] == "train", "generator"])
    untrained = sorted(set(df["generator"]) - trained)
    if untrained:
        items = []
        for g in untrained:
            counts = df[df["generator"] == g].groupby(["split", "subclass"]).size()
            items.append(f"generator {g!r}: " + ", ".join(f"{n} {sub} in {sp}" for (sp, sub), n in counts.items()))
        raise DataError(format_problem(f"{where}: {len(untrained)} generator(s) have no training images", items,
                                 "add images of a training subclass for them, or remove them from the data"))

    ft = np.full(len(df), "", dtype=object)
    test = df["split"] == "test"
    for g, rows in df[test].groupby("generator", sort=True):
        n = len(rows)
        n_test = min(n - 1, int(round(n * ft_fraction))) if n > 1 else 0
        chosen = _pick(rows["path"], n_test, _rng(ft_seed, "ft", g))
        ft[rows.index.to_numpy()] = np.where(rows["path"].isin(chosen), "ft_test", "ft_train")
    df["ft_split"] = ft
    return df


def _where_row(r) -> str:
    return f"line {r.line}" if getattr(r, "line", 0) else str(r.path)

