"""Splits of the study: train / val / valsub / test and seed 002's fine-tuning split of the held-out subclass.

- `test` is the held-out subclass: its test pool (manifest split `pool`, which the embedded benchmark renders
  for every subclass and generator) when it has one, else every image of it. A held-out subclass never
  reaches `train` or `val`: with a pool, its training cells leave the training matrix (that is what makes
  leave-one-subclass-out rotation possible on the benchmark); without one, a row that puts it into training
  is a contradiction and raises.
- `valsub` is the validation subclass (DomainBed's model-selection rule (b), leave-one-domain-out): one more
  subclass kept out of training and used only to choose checkpoints and hyper-parameters, the honest
  analogue of unseen content. Its pool (or its images) forms the split; its training cells leave training.
  `choose_val_subclass` gives the rule "auto" uses.
- `val` is carved from the training cells (generator x subclass) when the data does not say, a
  `val_fraction` of each cell, keeping at least one training image per cell, so validation has the same
  bias as training (it is the in-distribution check, rule (a)).
- `ft_split` splits `test` 80/20, stratified by generator, with a seed of its own that does not follow the
  run seed: every technique and every seed is then scored on the same `ft_test` images.
- `unknown` (the open-set protocol, leave-one-generator-out): every image of a generator left out of training
  (`unknown_rows`), on seen and unseen content alike; the model never sees that generator, and is asked to
  say "none of these" for it. The other splits are assigned as if the generator did not exist.
- Pools of subclasses that are neither held out nor the validation subclass are not used; a training row
  whose `instance` (the cell model that rendered it: the simulator's instance-matched variant) is the held-out
  or validation subclass leaves training too, so a model never sees the generator instance it is tested on.

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
POOL_SPLITS = ("pool",)
MIN_ROTATION_GENERATORS = 2  # a subclass is a rotation (or validation subclass) only when this many generators have it


def _rng(seed: int, *keys: str) -> np.random.Generator:
    # crc32 is stable across processes (Python's hash() of a str is randomised per process).
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *(zlib.crc32(k.encode()) for k in keys)])


def _pick(paths: pd.Series, n: int, rng: np.random.Generator) -> set:
    """`n` paths chosen at random, independent of the order they come in."""
    ordered = np.sort(paths.to_numpy(dtype=str))
    return set(ordered[rng.permutation(len(ordered))[:n]])


def _instance(df: pd.DataFrame) -> pd.Series:
    inst = df["instance"] if "instance" in df else pd.Series("", index=df.index)
    return inst.where(inst != "", df["subclass"])


def _training_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that can be trained on (not a test pool or a declared test image)."""
    return df[~df["split"].isin(POOL_SPLITS + ("test",))]


def _keeps_every_generator(df: pd.DataFrame, out: Iterable[str]) -> bool:
    """True when every generator keeps a training row after the subclasses `out` leave training."""
    out = set(out)
    train = _training_rows(df)
    left = train[~train["subclass"].isin(out) & ~_instance(train).isin(out)]
    return set(left["generator"]) == set(df["generator"])


def _evaluation_generators(df: pd.DataFrame, subclass: str) -> int:
    """How many generators the test set of `subclass` would cover (its pool, else all its images)."""
    rows = df[df["subclass"] == subclass]
    pool = rows[rows["split"].isin(POOL_SPLITS)]
    return (pool if len(pool) else rows)["generator"].nunique()


def eligible_rotations(frame: pd.DataFrame) -> list[str]:
    """The subclasses that can be held out in a leave-one-subclass-out rotation: every generator keeps a
    training image without them, and their test set covers at least MIN_ROTATION_GENERATORS generators
    (on the embedded benchmark: every subclass but `face`, the only training subclass of lsgm)."""
    df = frame.copy()
    if "split" not in df:
        df["split"] = ""
    return [s for s in sorted(df["subclass"].unique())
            if _keeps_every_generator(df, [s]) and _evaluation_generators(df, s) >= MIN_ROTATION_GENERATORS]


def choose_val_subclass(frame: pd.DataFrame, heldout: Iterable[str]) -> str | None:
    """The validation subclass rule "auto" picks for a held-out set, or None when no subclass qualifies.

    Among the subclasses not held out whose removal still leaves every generator a training image and whose
    pool (or images) covers at least MIN_ROTATION_GENERATORS generators: one with no training image at all
    (a pool-only subclass such as the benchmark's military vehicles when another subclass is held out; it
    costs no training data) covering the most generators; otherwise the one with the fewest training images
    (the least training data lost). Ties: the most generators covered, then the name.
    """
    heldout = set(heldout)
    df = frame.copy()
    if "split" not in df:
        df["split"] = ""
    train = _training_rows(df)
    n_train = train["subclass"].value_counts()
    candidates = []
    for s in sorted(set(df["subclass"]) - heldout):
        covered = _evaluation_generators(df, s)
        if covered < MIN_ROTATION_GENERATORS or not _keeps_every_generator(df, heldout | {s}):
            continue
        n = int(n_train.get(s, 0))
        candidates.append((n > 0, n, -covered, s))
    return min(candidates)[-1] if candidates else None


def assign_splits(frame: pd.DataFrame, heldout: Iterable[str], val_fraction: float = 0.2, seed: int = 0,
                  where: str = "the data", ft_fraction: float = FT_FRACTION, ft_seed: int = FT_SEED,
                  val_subclass: str | None = None) -> pd.DataFrame:
    """Fill `split` (rows given "" are decided here) and add `ft_split`; raise DataError on contradictions.

    `frame` needs columns path, generator, subclass, split ("" = undecided) and line (CSV line, 0 if none),
    optionally instance. val_subclass: the validation subclass (see the module docstring), or None. Rows that
    the rotation leaves out (other subclasses' pools, the held-out and validation cells when they have a
    pool) are dropped from the returned frame.
    """
    heldout = tuple(heldout)
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction is {val_fraction!r}; it must be at least 0 and below 1")
    df = frame.reset_index(drop=True).copy()
    if "instance" not in df:
        df["instance"] = ""
    present = sorted(df["subclass"].unique())
    absent = [h for h in heldout if h not in present]
    if absent:
        raise DataError(f"held-out subclass(es) {', '.join(map(repr, absent))} do not occur in {where}; "
                        f"subclasses present: {', '.join(present)}. Pass --heldout (or heldout=) with one of them")
    if val_subclass is not None:
        if val_subclass in heldout:
            raise DataError(f"the validation subclass {val_subclass!r} is also held out; choose another "
                            "(val_subclass=auto picks one) or none")
        if val_subclass not in present:
            raise DataError(f"validation subclass {val_subclass!r} does not occur in {where}; subclasses present: "
                            f"{', '.join(present)}. Use val_subclass=auto, none, or one of them")
    pooled = set(df.loc[df["split"].isin(POOL_SPLITS), "subclass"])
    is_held = df["subclass"].isin(heldout)
    errors = []
    leak = df[is_held & df["split"].isin(("train", "val")) & ~df["subclass"].isin(pooled)]
    if len(leak):
        errors.append(format_problem(f"{len(leak)} row(s) put a held-out subclass into training",
                               [f"{_where_row(r)}: subclass {r.subclass!r} has split {r.split!r}" for r in leak.itertuples()],
                               f"held-out subclass(es) ({', '.join(heldout)}) must be split 'test' (or empty); "
                               "change those splits, choose a different held-out subclass, or give the subclass a "
                               "test pool (split 'pool') so its training rows can leave training"))
    stray = df[~is_held & (df["split"] == "test")]
    if len(stray):
        errors.append(format_problem(f"{len(stray)} test row(s) whose subclass is not held out",
                               [f"{_where_row(r)}: subclass {r.subclass!r} has split 'test'" for r in stray.itertuples()],
                               f"the test split is the held-out subclass(es) ({', '.join(heldout) or 'none'}); add the "
                               "subclass to heldout, change those rows' split to train/val, or to 'pool' (a test "
                               "pool, used only when its subclass is held out)"))
    if errors:
        raise DataError(f"{where} has problems:\n" + "\n".join(errors))

    out = set(heldout) | ({val_subclass} if val_subclass else set())
    is_pool = df["split"].isin(POOL_SPLITS)
    is_valsub = df["subclass"] == val_subclass
    keep = (
        (is_pool & (is_held | is_valsub))                                            # the pools in use
        | (~is_pool & is_held & ~df["subclass"].isin(pooled))                         # a held-out subclass without a pool
        | (~is_pool & is_valsub & ~df["subclass"].isin(pooled))                       # a validation subclass without one
        | (~is_pool & ~df["subclass"].isin(out) & ~_instance(df).isin(out))           # training rows
    )
    df = df[keep].reset_index(drop=True)
    is_held = df["subclass"].isin(heldout)
    df.loc[df["subclass"] == val_subclass, "split"] = "valsub"
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


def unknown_rows(frame: pd.DataFrame, heldout: Iterable[str]) -> pd.DataFrame:
    """The `unknown` split: the rows of generators left out of training (the open-set protocol), all of their
    images except the test pools of subclasses that are not held out (a pool is its subclass's test set only
    when the subclass is held out, so the unknown split covers the same content as train, val and test)."""
    heldout = set(heldout)
    is_pool = frame["split"].isin(POOL_SPLITS)
    keep = ~is_pool | frame["subclass"].isin(heldout)
    return frame[keep].assign(split="unknown").reset_index(drop=True)


def _where_row(r) -> str:
    return f"line {r.line}" if getattr(r, "line", 0) else str(r.path)

