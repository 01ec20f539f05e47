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

- Near-duplicate groups (column `duplicate_group`: the manifest's `group`, else the groups `load_study_data` detects with a
  perceptual hash) are kept whole by every split: val and ft_test are drawn group by group, and an image
  whose group has a member in test or valsub leaves training (set aside, with the reason).
- A generator left with fewer than MIN_TRAIN_IMAGES training images by a rotation (realdev's began and
  stylegan when `face` is held out: faces only) is dropped from that rotation and its label set; its rows are
  set aside and its test images counted as unattributable (`StudyData.unattributable`), not lost.

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
# A subclass is a rotation (or a validation subclass) when at least this many generators that keep training
# images have at least MIN_TEST_IMAGES images of it: with two, "attribution" is a coin between two labels, and
# a validation subclass of two generators picks checkpoints on noise (issue 17: `building`, 20 images of 2).
MIN_ROTATION_GENERATORS = 3
MIN_TEST_IMAGES = 3
# A generator with fewer training images than this in a rotation is left out of it (its test images are
# unattributable) instead of being reported at chance.
MIN_TRAIN_IMAGES = 1


def _rng(seed: int, *keys: str) -> np.random.Generator:
    # crc32 is stable across processes (Python's hash() of a str is randomised per process).
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *(zlib.crc32(k.encode()) for k in keys)])


def _instance(df: pd.DataFrame) -> pd.Series:
    inst = df["instance"] if "instance" in df else pd.Series("", index=df.index)
    return inst.where(inst != "", df["subclass"])


def _training_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that can be trained on (not a test pool or a declared test image)."""
    return df[~df["split"].isin(POOL_SPLITS + ("test",))]


def _trainable_generators(df: pd.DataFrame, out: Iterable[str]) -> set:
    """The generators that keep at least MIN_TRAIN_IMAGES training rows after the subclasses `out` leave training."""
    out = set(out)
    train = _training_rows(df)
    left = train[~train["subclass"].isin(out) & ~_instance(train).isin(out)]
    counts = left.groupby("generator").size()
    return set(counts[counts >= MIN_TRAIN_IMAGES].index)


def _evaluation_generators(df: pd.DataFrame, subclass: str, generators: Iterable[str]) -> int:
    """How many of `generators` have at least MIN_TEST_IMAGES images in the test set of `subclass` (its pool,
    else all its images)."""
    rows = df[df["subclass"] == subclass]
    pool = rows[rows["split"].isin(POOL_SPLITS)]
    counts = (pool if len(pool) else rows).groupby("generator").size()
    return int(sum(counts.get(g, 0) >= MIN_TEST_IMAGES for g in generators))


def eligible_rotations(frame: pd.DataFrame) -> list[str]:
    """The subclasses that can be held out in a leave-one-subclass-out rotation: at least
    MIN_ROTATION_GENERATORS generators that keep a training image without them have at least MIN_TEST_IMAGES
    test images. A generator left without training images does not count; the rotation runs without it
    (`assign_splits`). On the embedded benchmark this admits face, which runs without lsgm (faces are its only
    training subclass); on realdev: animal, art, face, other, scene."""
    df = frame.copy()
    if "split" not in df:
        df["split"] = ""
    return [s for s in sorted(df["subclass"].unique())
            if _evaluation_generators(df, s, _trainable_generators(df, [s])) >= MIN_ROTATION_GENERATORS]


def choose_val_subclass(frame: pd.DataFrame, heldout: Iterable[str]) -> str | None:
    """The validation subclass rule "auto" picks for a held-out set, or None when no subclass qualifies (model
    selection then falls back to rule (a), in-distribution validation: `StudyData.val_subclass_note` says so).

    Among the subclasses not held out whose removal leaves every generator of the rotation (those that keep
    training images without the held-out subclasses) a training image, and which cover at least
    MIN_ROTATION_GENERATORS of them with at least MIN_TEST_IMAGES images each: one with no training image at
    all (a pool-only subclass such as the benchmark's military vehicles when another subclass is held out; it
    costs no training data) covering the most generators; otherwise the one with the fewest training images
    (the least training data lost). Ties: the most generators covered, then the name.
    """
    heldout = set(heldout)
    df = frame.copy()
    if "split" not in df:
        df["split"] = ""
    train = _training_rows(df)
    n_train = train["subclass"].value_counts()
    rotation = _trainable_generators(df, heldout)
    candidates = []
    for s in sorted(set(df["subclass"]) - heldout):
        covered = _evaluation_generators(df, s, rotation)
        if covered < MIN_ROTATION_GENERATORS or not rotation <= _trainable_generators(df, heldout | {s}):
            continue
        n = int(n_train.get(s, 0))
        candidates.append((n > 0, n, -covered, s))
    return min(candidates)[-1] if candidates else None


def assign_splits(frame: pd.DataFrame, heldout: Iterable[str], val_fraction: float = 0.2, seed: int = 0,
                  where: str = "the data", ft_fraction: float = FT_FRACTION, ft_seed: int = FT_SEED,
                  val_subclass: str | None = None, min_train_images: int = MIN_TRAIN_IMAGES) -> pd.DataFrame:
    """Fill `split` (rows given "" are decided here) and add `ft_split`; raise DataError on contradictions.

    `frame` needs columns path, generator, subclass, split ("" = undecided) and line (CSV line, 0 if none),
    optionally instance and duplicate_group. val_subclass: the validation subclass (see the module docstring), or None.
    Rows that the rotation leaves out (other subclasses' pools, the held-out and validation cells when they
    have a pool) are dropped from the returned frame. Rows it cannot use are kept with split ASIDE and the
    reason in column `aside`: a generator with fewer than `min_train_images` training images (its test images
    are unattributable), an image whose near-duplicate group is in test or valsub. Column `duplicate_group`
    holds the unit each split keeps whole ("g:<name>" or "p:<path>").
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
    df["duplicate_group"] = _group_keys(df)
    df = _set_aside_group_leaks(df, where)
    undecided = df["split"] == ""
    val_groups: set = set()
    for (g, s), cell in df[undecided].groupby(["generator", "subclass"], sort=True):
        n_val = min(len(cell) - 1, int(round(len(cell) * val_fraction)))
        if n_val > 0:
            val_groups |= _pick_groups(cell, n_val, _rng(seed, "val", g, s), val_groups)
    df.loc[undecided, "split"] = np.where(df.loc[undecided, "duplicate_group"].isin(val_groups), "val", "train")
    df = _drop_untrained(df, where, min_train_images)

    ft = np.full(len(df), "", dtype=object)
    test = df["split"] == "test"
    for g, rows in df[test].groupby("generator", sort=True):
        n = len(rows)
        n_test = min(n - 1, int(round(n * ft_fraction))) if n > 1 else 0
        chosen = _pick_groups(rows, n_test, _rng(ft_seed, "ft", g))
        ft[rows.index.to_numpy()] = np.where(rows["duplicate_group"].isin(chosen), "ft_test", "ft_train")
    df["ft_split"] = ft
    return df


REF_SEED = 0  # the target-data reference's folds: fixed, independent of the run seed (like FT_SEED)


def cross_fit_folds(test: pd.DataFrame, folds: int, seed: int = REF_SEED) -> np.ndarray:
    """The fold (0..folds-1) of each row of `test` for the target-data reference (issue 17): the held-out
    images cut into `folds` parts, near-duplicate groups (`duplicate_group`) whole, stratified by generator
    (per generator its groups in a random order, each to the fold that holds fewest of that generator's
    images, then fewest images). Depends on (seed, generator, sorted group keys) only, like every split."""
    if int(folds) < 2:
        raise DataError(f"folds={folds!r}: cross-fitting needs at least 2 folds (each image scored by a model "
                        "trained on the others)")
    folds = int(folds)
    keys = _group_keys(test).to_numpy(dtype=str)
    out = np.full(len(test), -1, dtype=np.int64)
    total = np.zeros(folds, dtype=np.int64)
    generators = test["generator"].to_numpy(dtype=str)
    for g in sorted(set(generators)):
        mine = generators == g
        units, sizes = np.unique(keys[mine], return_counts=True)
        held = np.zeros(folds, dtype=np.int64)
        for i in _rng(seed, "ref", g).permutation(len(units)):
            fold = min(range(folds), key=lambda f: (held[f], total[f], f))
            out[keys == units[i]] = fold
            held[fold] += sizes[i]
            total[fold] += sizes[i]
    return out


def cross_fit_frame(frame: pd.DataFrame, fold: int, folds: int, seed: int = REF_SEED) -> pd.DataFrame:
    """The splits one fold of the target-data reference trains and is scored on: the held-out images
    (`test`) of the other folds join `train`, the fold's own stay `test`; `ft_split` is cleared (the
    fine-tuning split does not apply). A near-duplicate group is in one fold, so a fold's model never
    sees an image of its own test groups."""
    if not 0 <= int(fold) < int(folds):
        raise DataError(f"fold={fold!r} is not one of the {folds} folds (0..{int(folds) - 1})")
    df = frame.copy()
    test = (df["split"] == "test").to_numpy()
    assigned = cross_fit_folds(df[test], folds, seed)
    other = np.zeros(len(df), dtype=bool)
    other[np.flatnonzero(test)[assigned != int(fold)]] = True
    df.loc[other, "split"] = "train"
    df["ft_split"] = ""
    return df


def unknown_rows(frame: pd.DataFrame, heldout: Iterable[str]) -> pd.DataFrame:
    """The `unknown` split: the rows of generators left out of training (the open-set protocol), all of their
    images except the test pools of subclasses that are not held out (a pool is its subclass's test set only
    when the subclass is held out, so the unknown split covers the same content as train, val and test)."""
    heldout = set(heldout)
    is_pool = frame["split"].isin(POOL_SPLITS)
    keep = ~is_pool | frame["subclass"].isin(heldout)
    return frame[keep].assign(split="unknown").reset_index(drop=True)


ASIDE = "aside"  # a row the rotation cannot use: its reason is in the `aside` column (StudyData.set_aside)


def _group_keys(df: pd.DataFrame) -> pd.Series:
    """The unit every split keeps whole: the row's `group` when it names one, else the image itself."""
    group = df["duplicate_group"] if "duplicate_group" in df else pd.Series("", index=df.index)
    group = group.fillna("").astype(str)
    return ("g:" + group).where(group != "", "p:" + df["path"].astype(str))


def _pick_groups(rows: pd.DataFrame, n: int, rng: np.random.Generator, chosen: Iterable[str] = ()) -> set:
    """Groups of `rows` holding at most `n` images, at random and independent of the row order: the groups
    already `chosen` (elsewhere) count first, then whole groups in a random order while they fit. With
    every image a group of its own this is the first `n` of a random permutation of the sorted paths."""
    sizes = rows.groupby("duplicate_group").size()
    taken = {g for g in sizes.index if g in set(chosen)}
    total = int(sizes[list(taken)].sum()) if taken else 0
    units = np.sort(sizes.index.to_numpy(dtype=str))
    for g in units[rng.permutation(len(units))]:
        if g not in taken and total + sizes[g] <= n:
            taken.add(g)
            total += int(sizes[g])
    return taken


def _set_aside_group_leaks(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """A group is on one side of every split: its training rows leave training when the group also has an image
    in the test or validation-subclass split (set aside, with the reason). Splits given in a manifest that
    put one group in both train and val are a contradiction and raise."""
    df = df.copy()
    if "aside" not in df:
        df["aside"] = ""
    given = df[df["split"].isin(("train", "val"))].groupby("duplicate_group")["split"].nunique()
    mixed = given[given > 1].index
    if len(mixed):
        items = [f"group {g[2:]!r}: " + ", ".join(f"{_where_row(r)} {r.split}" for r in df[df["duplicate_group"] == g].itertuples())
                 for g in mixed]
        raise DataError(format_problem(f"{where}: {len(mixed)} near-duplicate group(s) are split between train and val",
                                       items, "give every row of a group the same split (or leave the splits empty)"))
    for split in ("test", "valsub"):
        held = set(df.loc[df["split"] == split, "duplicate_group"])
        leak = df["split"].isin(("", "train", "val")) & df["duplicate_group"].isin(held)
        df.loc[leak, "aside"] = f"near-duplicate of an image in the {split} split (same group): kept out of training"
        df.loc[leak, "split"] = ASIDE
    return df


def _drop_untrained(df: pd.DataFrame, where: str, min_train_images: int) -> pd.DataFrame:
    """A generator with fewer than `min_train_images` training images in this rotation cannot be attributed:
    the rotation runs without it. Its rows are set aside, its test images as unattributable (listed and counted
    by StudyData, not lost). Fewer than two generators left is no attribution at all and raises."""
    trained = df[df["split"] == "train"].groupby("generator").size()
    dropped = sorted(g for g in df["generator"].unique() if trained.get(g, 0) < min_train_images)
    if not dropped:
        return df
    kept = sorted(set(df["generator"]) - set(dropped))
    if len(kept) < 2:
        items = []
        for g in dropped:
            counts = df[df["generator"] == g].groupby(["split", "subclass"]).size()
            items.append(f"generator {g!r}: " + ", ".join(f"{n} {sub} in {sp}" for (sp, sub), n in counts.items()))
        raise DataError(format_problem(f"{where}: {len(dropped)} generator(s) have no training images", items,
                                       f"only {len(kept)} generator(s) would be left to attribute; add images of a "
                                       "training subclass for them, hold out another subclass, or remove them"))
    df = df.copy()
    for g in dropped:
        rows = (df["generator"] == g) & (df["split"] != ASIDE)
        n = int(trained.get(g, 0))
        why = (f"generator {g!r} has {n} training image(s) in this rotation (fewer than {min_train_images}): "
               "the rotation runs without it")
        df.loc[rows & (df["split"] == "test"), "aside"] = "unattributable: " + why
        df.loc[rows & (df["split"] != "test"), "aside"] = why
        df.loc[rows, "split"] = ASIDE
    return df


def _where_row(r) -> str:
    return f"line {r.line}" if getattr(r, "line", 0) else str(r.path)

