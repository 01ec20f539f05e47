"""`load_study_data`: one call from a folder or manifest to the labelled, split table of the study.

The result (`StudyData`) is what every other part reads: its `frame` (one row per image: path, generator,
subclass, split, ft_split, mask), the label orders (`generators`, `subclasses`), the splits and the bias
table. It decodes no pixel; `ImageDataset` (or `verify_images`) does, when images are first read.
"""
from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..config import HELDOUT
from ..errors import DataError
from ..rotation import Rotation
from .bias import bias_table as _bias_table
from .datasets import verify_images
from .fingerprint import benchmark_file, data_fingerprint
from .sources import discover
from .pixels import near_duplicate_groups, pixel_statistics
from .splits import (ASIDE, FT_FRACTION, FT_SEED, MIN_ROTATION_GENERATORS, MIN_TEST_IMAGES, MIN_TRAIN_IMAGES,
                     assign_splits, choose_val_subclass, cross_fit_frame, unknown_rows)

SPLIT_SEED = 0  # the train/val and ft_train/ft_test splits stay fixed across training seeds: seeds vary the model only
COLUMNS = ("path", "generator", "subclass", "split", "ft_split", "mask", "instance", "duplicate_group")
ASIDE_COLUMNS = ("path", "generator", "subclass", "duplicate_group", "aside")
GROUP_SOURCES = ("auto", "manifest", "detect", "none")
MAX_GROUPED_SHARE = 0.4   # detected groups holding more of the images than this are look-alikes: not used
SPLIT_NAMES = ("train", "val", "valsub", "test", "ft_train", "ft_test", "unknown")


class StudyData:
    """The images of a study with their labels and splits. Build it with `load_study_data`."""

    def __init__(self, frame: pd.DataFrame, heldout: Sequence[str], root: Path | None = None,
                 source: str = "", skipped: list | None = None, on_bad: str = "raise",
                 val_subclass: str | None = None, set_aside: pd.DataFrame | None = None,
                 groups_from: str = "none", val_subclass_note: str = "",
                 unknown_generators: Sequence[str] = ()) -> None:
        for column in ("instance", "duplicate_group"):
            frame = frame.assign(**{column: ""}) if column not in frame else frame
        aside = frame["split"] == ASIDE
        found = frame[aside].assign(aside=frame.get("aside", pd.Series("", index=frame.index))[aside])
        # the rows this rotation cannot use, each with its reason (unattributable test images among them)
        self.set_aside = pd.concat([set_aside, found.loc[:, list(ASIDE_COLUMNS)]], ignore_index=True) \
            if set_aside is not None and len(set_aside) else found.loc[:, list(ASIDE_COLUMNS)].reset_index(drop=True)
        self.frame = frame.loc[~aside, list(COLUMNS)].reset_index(drop=True)
        self.heldout = tuple(heldout)
        # generators left out of training (split `unknown`): not among `generators`, the classes the model knows
        self.unknown_generators = tuple(unknown_generators)
        self.val_subclass = val_subclass  # the validation subclass (split `valsub`), or None
        self.val_subclass_note = val_subclass_note  # why there is none, when "auto" found none
        self.groups_from = groups_from    # where the near-duplicate groups come from: manifest | detected | none
        self.root = root
        self.source = source            # "folder <path>" or "manifest <path>", for messages
        self.skipped: list = list(skipped or [])
        self.on_bad = on_bad
        self.generators: list[str] = sorted(set(self.frame["generator"]) - set(self.unknown_generators))
        # the subclasses trained on (the subclass head's classes): not the held-out or validation subclass
        trained = self.frame[self.frame["split"].isin(("train", "val"))]
        self.subclasses: list[str] = sorted(set(trained["subclass"]) - set(self.heldout) - {val_subclass})
        self.generator_index = {g: i for i, g in enumerate(self.generators)}
        self.subclass_index = {s: i for i, s in enumerate(self.subclasses)}

    @property
    def unattributable(self) -> pd.DataFrame:
        """Test images of generators this rotation runs without (too few training images), with the reason."""
        return self.set_aside[self.set_aside["aside"].str.startswith("unattributable")].reset_index(drop=True)

    @property
    def dropped_generators(self) -> list[str]:
        """The generators this rotation runs without (no or too few training images once the held-out and
        validation subclasses leave training)."""
        dropped = self.set_aside[self.set_aside["aside"].str.contains("the rotation runs without it", regex=False)]
        return sorted(dropped["generator"].unique())

    def set_aside_summary(self) -> str:
        """The rows set aside in words: unattributable test images per dropped generator, near-duplicates of
        test / validation-subclass images kept out of training ("" when none)."""
        if not len(self.set_aside):
            return ""
        lines = []
        for g in self.dropped_generators:
            n = int((self.unattributable["generator"] == g).sum())
            lines.append(f"generator {g!r} dropped from this rotation (no or too few training images): "
                         f"{n} test image(s) unattributable")
        leaks = self.set_aside[self.set_aside["aside"].str.startswith("near-duplicate")]
        if len(leaks):
            lines.append(f"{len(leaks)} training image(s) kept out of training: a near-duplicate is in the test or "
                         "validation-subclass split")
        return "\n".join(lines)

    @property
    def n_generators(self) -> int:
        return len(self.generators)

    @property
    def n_subclasses(self) -> int:
        return len(self.subclasses)

    def split(self, name: str) -> pd.DataFrame:
        """Rows of one split: train | val | valsub | test | ft_train | ft_test (index reset)."""
        if name not in SPLIT_NAMES:
            raise DataError(f"unknown split {name!r}; valid splits: {', '.join(SPLIT_NAMES)}")
        column = "ft_split" if name.startswith("ft_") else "split"
        return self.frame[self.frame[column] == name].reset_index(drop=True)

    def labels(self, frame: pd.DataFrame | None = None) -> dict[str, np.ndarray]:
        """Integer labels of `frame` rows: generator, subclass (-1 held out) and group (-1 held out); a row of an
        unknown generator (split `unknown`) has generator and group -1."""
        frame = self.frame if frame is None else frame
        unknown = frame["generator"].isin(self.unknown_generators).to_numpy()
        if not unknown.any():
            return label_codes(frame, self.generators, self.subclasses)
        known = label_codes(frame[~unknown], self.generators, self.subclasses)
        out = {k: np.full(len(frame), -1, dtype=np.int64) for k in known}
        for k, v in known.items():
            out[k][~unknown] = v
        out["subclass"] = frame["subclass"].map(self.subclass_index).fillna(-1).to_numpy(dtype=np.int64)
        return out

    def verified(self, progress: bool | None = None) -> "StudyData":
        """Every image (and mask) decoded once: with on_bad="raise" the first bad files stop it, named; with
        "skip" the study without them, each listed with its reason in `.skipped` (notebook 01 shows them)."""
        good, skipped = verify_images(self.frame, self.on_bad, len(self.frame) > 2000 if progress is None else progress)
        return StudyData(good, self.heldout, root=self.root, source=self.source, skipped=self.skipped + skipped,
                         on_bad=self.on_bad, val_subclass=self.val_subclass, set_aside=self.set_aside,
                         groups_from=self.groups_from, val_subclass_note=self.val_subclass_note,
                         unknown_generators=self.unknown_generators)

    def cross_fit(self, fold: int, folds: int) -> "StudyData":
        """Fold `fold` of `folds` of the target-data reference (`splits.cross_fit_frame`): the same study with
        the other folds' held-out images in `train` and only this fold's in `test`; labels unchanged."""
        return StudyData(cross_fit_frame(self.frame, fold, folds), self.heldout, root=self.root, source=self.source,
                         skipped=self.skipped, on_bad=self.on_bad, val_subclass=self.val_subclass,
                         set_aside=self.set_aside, groups_from=self.groups_from,
                         val_subclass_note=self.val_subclass_note, unknown_generators=self.unknown_generators)

    def bias_table(self, split: str | None = "train") -> pd.DataFrame:
        """Generator x subclass image counts of a split (None or "all": every row), zeros shown.

        Columns are the training subclasses (sorted) for train/val, the held-out subclasses for test and
        ft_*, and training then held-out subclasses for "all".
        """
        if split in (None, "all"):
            frame, cols = self.frame, self.subclasses + sorted(self.heldout)
        else:
            frame = self.split(split)
            cols = self.subclasses if split in ("train", "val") else sorted(self.heldout)
        return _bias_table(frame, self.generators, cols)

    def __repr__(self) -> str:
        counts = self.frame["split"].value_counts().to_dict()
        return (f"StudyData({self.source}: {len(self.frame)} images, {self.n_generators} generators, "
                f"{self.n_subclasses} training subclasses, held out {list(self.heldout)}, validation subclass "
                f"{self.val_subclass}, splits {counts}"
                + (f", unknown generators {list(self.unknown_generators)}" if self.unknown_generators else "")
                + (f", dropped {self.dropped_generators}" if self.dropped_generators else "")
                + f", groups {self.groups_from})")


def label_codes(frame: pd.DataFrame, generators: Sequence[str], subclasses: Sequence[str]) -> dict[str, np.ndarray]:
    """The one label mapping of the study: generator index (sorted generators), subclass index (sorted training
    subclasses, -1 for a held-out one) and group = generator * n_subclasses + subclass (-1 held out)."""
    gen = frame["generator"].map({g: i for i, g in enumerate(generators)})
    if gen.isna().any():
        unknown = sorted(set(frame.loc[gen.isna(), "generator"]))
        raise DataError(f"generator(s) {unknown} are not among this study's generators {list(generators)}; "
                        "build the dataset from rows of the same StudyData")
    gen = gen.to_numpy(dtype=np.int64)
    sub = frame["subclass"].map({s: i for i, s in enumerate(subclasses)}).fillna(-1).to_numpy(dtype=np.int64)
    group = np.where(sub >= 0, gen * len(subclasses) + sub, -1)
    return {"generator": gen, "subclass": sub, "group": group}


def load_study_data(root: str | os.PathLike, heldout: Iterable[str] | str = HELDOUT,
                    val_fraction: float = 0.2, seed: int = 0, on_bad: str = "raise",
                    ft_fraction: float = FT_FRACTION, ft_seed: int = FT_SEED,
                    val_subclass: str = "none", unknown_generators: Iterable[str] = (),
                    groups: str = "auto",
                    min_train_images: int = MIN_TRAIN_IMAGES) -> StudyData:
    """Discover, validate and split the images of a folder or manifest (no pixel is decoded here).

    root: `<root>/<generator>/<subclass>/...` images, a folder with `manifest.csv`, or a manifest CSV path.
    heldout: subclass(es) kept out of training; their images form the `test` split.
    val_fraction, seed: share of each training cell used for validation when the data gives no split.
    on_bad: "raise" (default) or "skip" (leave unusable files out, listed in `.skipped`, with a warning).
    val_subclass: "none" (no validation subclass), "auto" (`splits.choose_val_subclass`: none when no
    subclass qualifies) or a subclass name: kept out of training as the `valsub` split (model selection).
    unknown_generators: generators left out of training (the open-set protocol): their images form the `unknown`
    split (`splits.unknown_rows`) and every other split is made as if they did not exist.
    groups: where the near-duplicate groups every split keeps whole come from: "auto" (default: the manifest's
    `group` column when it has one; else the groups detected with a perceptual hash, `pixels`, on any folder
    but the embedded benchmark, whose images are rendered independently, unless they hold more than
    MAX_GROUPED_SHARE of the images: then the hash sees look-alike content, not copies, and a warning says
    so), "manifest", "detect" or "none". `groups_from` says which.
    min_train_images: a generator with fewer training images in this rotation is dropped from it (its test
    images are listed in `.unattributable`, its name in `.dropped_generators`).
    """
    heldout = (heldout,) if isinstance(heldout, str) else tuple(heldout)
    unknown = (unknown_generators,) if isinstance(unknown_generators, str) else tuple(unknown_generators)
    src = discover(root, on_bad=on_bad)
    warn_near_duplicate_labels(src.frame, src.where)
    frame, groups_from = with_groups(src, groups)
    known, left_out = split_unknown(frame, unknown, src.where)
    chosen = resolve_val_subclass(known, heldout, val_subclass)
    note = ""
    if val_subclass == "auto" and chosen is None:
        note = (f"no subclass qualifies as validation subclass (it needs at least {MIN_ROTATION_GENERATORS} of the "
                f"rotation's generators with at least {MIN_TEST_IMAGES} images each, and must leave each of them a "
                "training image): model selection falls back to rule (a), in-distribution validation")
    frame = assign_splits(known, heldout, val_fraction=val_fraction, seed=seed, where=src.where,
                          ft_fraction=ft_fraction, ft_seed=ft_seed, val_subclass=chosen,
                          min_train_images=min_train_images)
    if unknown:
        frame = pd.concat([frame, unknown_rows(left_out, heldout).assign(ft_split="")], ignore_index=True)
    data = StudyData(frame, heldout, root=src.root, source=src.where, skipped=src.skipped, on_bad=on_bad,
                     val_subclass=chosen, groups_from=groups_from, val_subclass_note=note, unknown_generators=unknown)
    if src.skipped:
        warn_skipped(src.skipped, src.where)
    return data


def split_unknown(frame: pd.DataFrame, unknown: Sequence[str], where: str = "the data"
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rows of known generators, the rows of the generators `unknown` leaves out of training); DataError
    when one of them is not in the data or fewer than two known generators would remain."""
    present = sorted(frame["generator"].unique())
    absent = [g for g in unknown if g not in present]
    if absent:
        raise DataError(f"unknown generator(s) {absent} (unknown_generators) do not occur in {where}; generators "
                        f"present: {', '.join(present)}")
    if len(set(present) - set(unknown)) < 2:
        raise DataError(f"unknown_generators={list(unknown)} leaves fewer than two known generators in {where}; "
                        "leave fewer generators out")
    is_unknown = frame["generator"].isin(unknown)
    return frame[~is_unknown].reset_index(drop=True), frame[is_unknown].reset_index(drop=True)


def with_groups(src, groups: str) -> tuple[pd.DataFrame, str]:
    """(the source's rows with their `group`, where the groups come from: "manifest", "detected (perceptual
    hash)" or "none"); see `load_study_data`'s `groups`."""
    if groups not in GROUP_SOURCES:
        raise DataError(f"groups is {groups!r}; valid choices: {', '.join(GROUP_SOURCES)}")
    frame = src.frame.copy()
    if groups in ("auto", "manifest") and src.has_group:
        return frame, "manifest"
    if groups == "manifest":
        raise DataError(f"{src.where} has no 'group' column; add one (rows of a near-duplicate group share a "
                        "name, empty = the image alone) or use groups='auto' to detect them")
    benchmark = benchmark_file(src.root) is not None  # the embedded benchmark: its images are rendered independently
    if groups == "none" or (groups == "auto" and benchmark):
        frame["duplicate_group"] = ""
        return frame, "none"
    # an unreadable file gets no hash here: `verified()` or the dataset names it, as without groups
    ids = near_duplicate_groups(pixel_statistics(frame, on_bad="skip")["phash"], within=frame["generator"])
    sizes = pd.Series(ids).value_counts()
    grouped = float((sizes[ids].to_numpy() > 1).mean()) if len(ids) else 0.0
    if groups == "auto" and grouped > MAX_GROUPED_SHARE:
        # near-duplicates are the exception in a real folder (realdev: 25 of 650 images); when the hash joins
        # most of a folder, it measures how alike its content is (a synthetic folder), not copies
        warnings.warn(f"{src.where}: the perceptual hash finds near-duplicates for {grouped:.0%} of the images, more "
                      f"than {MAX_GROUPED_SHARE:.0%}: look-alike content rather than copies, so the splits do not use "
                      "these groups; give the manifest a `group` column if the folder has real near-duplicates",
                      stacklevel=3)
        frame["duplicate_group"] = ""
        return frame, f"none (detected groups cover {grouped:.0%} of the images: look-alikes, not used)"
    frame["duplicate_group"] = [f"near-duplicates {i}" if sizes[i] > 1 else "" for i in ids]
    return frame, "detected (perceptual hash)"


def resolve_val_subclass(frame: pd.DataFrame, heldout: Sequence[str], val_subclass: str) -> str | None:
    """The validation subclass a setting names: None for "none" (or "" / None), the rule's pick for "auto"."""
    if val_subclass in (None, "", "none"):
        return None
    if val_subclass == "auto":
        return choose_val_subclass(frame, heldout)
    return val_subclass


def resolve_rotation(root: str | os.PathLike, heldout: Iterable[str], val_subclass: str = "auto",
                     unknown_generators: Sequence[str] = ()) -> Rotation:
    """`heldout` as a `Rotation` carrying the validation subclass `val_subclass` names on the data at `root`
    ("none" when there is none): a name as it is, "auto" picked by `splits.choose_val_subclass` on the known
    generators' images (cached by the data's fingerprint). The one resolution of a rotation's validation subclass:
    `sweep.plan` resolves each rotation of a study once on the study's data and carries it down into every run of
    the rotation (so the oracles trained on the benchmark's twins, whose counts differ, leave out the same subclass
    as the runs they are compared with); the run id (`runfolder.resolved_rotation`) and the session's crossed pair
    ask here too. DataError when the data cannot be read."""
    rotation = Rotation(heldout)
    if val_subclass != "auto":
        return rotation.resolved(val_subclass)
    return rotation.resolved(_auto_val_subclass(data_fingerprint(root), str(root), tuple(rotation),
                                                tuple(unknown_generators)))


@functools.lru_cache(maxsize=256)
def _auto_val_subclass(fingerprint: str, root: str, heldout: tuple[str, ...], unknown: tuple[str, ...]) -> str | None:
    """The subclass "auto" picks on `root` (`fingerprint`: the cache key, so changed data is resolved again)."""
    known, _ = split_unknown(discover(root).frame, unknown, root)
    return resolve_val_subclass(known, heldout, "auto")


def load_config_data(config) -> StudyData:
    """The StudyData a `Config` describes (its data, held-out and validation subclasses, validation share;
    fixed split seed)."""
    return load_study_data(config.data, heldout=config.heldout, val_fraction=config.val_fraction,
                           seed=SPLIT_SEED, on_bad=config.on_bad, val_subclass=config.val_subclass,
                           unknown_generators=config.unknown_generators)


def warn_skipped(skipped: list, where: str) -> None:
    """One warning summarising skipped files (the full list is in `.skipped`)."""
    shown = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    warnings.warn(f"{where}: skipped {len(skipped)} unusable file(s) (see .skipped): {shown}{more}",
                  stacklevel=3)


def warn_near_duplicate_labels(frame: pd.DataFrame, where: str) -> None:
    """Warn when two labels differ only in case or separators ("Horse" / "horse", "style-gan2" /
    "style_gan2"): they are different classes to the model, which is rarely what the data meant."""
    for column in ("generator", "subclass"):
        values = pd.Series(sorted(frame[column].unique()))
        key = values.str.lower().str.replace(r"[\s_\-]+", "", regex=True)
        clashes = [list(g) for _, g in values.groupby(key) if len(g) > 1]
        if clashes:
            warnings.warn(f"{where}: {column} labels that differ only in case or separators are treated as "
                          f"different classes: {clashes}; rename the folders or manifest values if they are the same",
                          stacklevel=3)
