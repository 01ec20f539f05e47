"""The shortcut audit: can a generator be told apart by how its files are stored instead of by its fingerprint?

Real folders of generated images differ between generators in things that are not the generator's trace:
file format (PNG vs JPEG, the classic case in which PNG vs JPEG alone separated real from fake), JPEG
quality, image size and aspect ratio, colour mode and bit depth, and content. A model takes such a
shortcut whenever it exists, so it is measured before any model is trained:

    meta = file_metadata(data.frame)           # one row per image, from the file headers only
    audit = shortcut_audit(data)               # per-generator tables, one classifier per cue, warnings
    print(audit.summary())
    save_table(audit.table(), "01_shortcut_audit")

For each cue family a cross-validated logistic regression predicts the generator from that cue alone; its
balanced accuracy against chance (1 / n_generators) says how much the cue gives away, and its per-generator
recall and precision say which generator it gives away (the rule is in `shortcut_audit`).
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import JpegImagePlugin
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, precision_score, recall_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ..errors import DataError
from .images import _open
from .pixels import JPEG_HISTORY, duplicate_table, near_duplicate_groups, pixel_statistics

# Below 20 training images a generator is a handful of batches for the model, and its recall is measured in
# steps of 5 points or more; 20 is also where stratified 5-fold CV still holds 4 of its images per fold.
MIN_IMAGES = 20
# A generator is "told apart by a cue" when the cue-only classifier finds at least this share of its images
# (recall) and is right at least this often when it names it (precision, see PRECISION_MARGIN).
FLAG_RECALL = 0.9
FLAG_PRECISION = 0.9
# ... and its precision is also at least halfway from the generator's share of the images to 1, since
# naming one very large generator for every image has precision equal to its share.
PRECISION_MARGIN = 0.5
# Above chance + this fraction of the way to 1, a cue is reported as a partial cue even if no generator is flagged.
PARTIAL_CUE = 0.25
# A generator "leans on" a cue (a weaker shortcut, still worth a warning) when the cue-only classifier finds at
# least this share of its images and is right at least half the time it names it, and at least LEAN_LIFT times
# as often as its share of the images would be (precision >= min(0.9, max(0.5, LEAN_LIFT x share))): e.g. 86 %
# of one generator's images are JPEG, few others'.
LEAN_RECALL = 0.6
LEAN_PRECISION = 0.5
LEAN_LIFT = 2.0
# JPEG history (`pixels.blockiness`) is shared by every generator whose files were cut from JPEG grids, so no
# classifier on it alone tells one of them apart; it is a shortcut all the same (the model separates those
# generators from the clean ones by it). A generator is flagged when at least HISTORY_SHARE of its lossless
# files carry JPEG history, and at least HISTORY_LIFT times the share of the other generators' lossless files
# (on realdev: lightweight_gan, ncsnpp and stylegan2 at 97-100 % against 18-41 %).
HISTORY_SHARE = 0.6
HISTORY_LIFT = 2.0

IDENTITY_COLUMNS = ("path", "generator", "subclass", "split")
METADATA_COLUMNS = ("format", "mode", "bit_depth", "width", "height", "aspect", "file_bytes", "bytes_per_pixel",
                    "jpeg_quality", "jpeg_ijg_table", "jpeg_subsampling", "chroma_subsampled")

# The IJG (libjpeg) luminance quantisation table, JPEG standard Annex K.1, in natural order.
IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])


def _ijg_tables() -> np.ndarray:
    """(100, 64) sorted luminance tables libjpeg writes for quality 1..100 (jpeg_quality_scaling, baseline clamp)."""
    q = np.arange(1, 101)
    scale = np.where(q < 50, 5000 // q, 200 - 2 * q)
    tables = np.clip((IJG_LUMINANCE[None, :] * scale[:, None] + 50) // 100, 1, 255)
    return np.sort(tables, axis=1)


_IJG_SORTED = _ijg_tables()

# Horizontal x vertical ratio of luma to chroma sampling factors -> the usual name.
_SUBSAMPLING = {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0", (1, 2): "4:4:0", (4, 1): "4:1:1"}
_MODE_BITS = {"1": 1, "I": 32, "F": 32}


def jpeg_quality(table: Sequence[int]) -> tuple[int, bool]:
    """(quality, exact) of a JPEG luminance quantisation table, by the IJG-table scaling estimate.

    Method: the libjpeg quality 1-100 whose scaled Annex K luminance table (libjpeg's
    `jpeg_quality_scaling`, entries clamped to 1..255) is nearest, in summed absolute difference, to the
    file's table. Both tables are sorted first: the scaling is monotone, so this is exact for IJG tables
    and does not depend on whether the reader reports them in zigzag or natural order. `exact` is True when
    the file's table is an IJG table (libjpeg, Pillow, OpenCV, most tools); for other encoders (cameras,
    Photoshop) the quality is the nearest IJG equivalent.
    """
    t = np.sort(np.asarray(list(table), dtype=np.int64))
    if t.size != 64:
        raise ValueError(f"a quantisation table has 64 entries, not {t.size}")
    err = np.abs(_IJG_SORTED - t[None, :]).sum(axis=1)
    best = int(np.argmin(err))
    return best + 1, bool(err[best] == 0)


def _bit_depth(im) -> int:
    """Bits per channel as stored in the file: the raw mode of the first tile when it says (PNG 'P;4',
    'RGB;16B', 'I;16B'), else the mode's (Pillow opens 16-bit RGB PNGs as 8-bit 'RGB', the tile tells)."""
    bits = 16 if im.mode.startswith("I;16") else _MODE_BITS.get(im.mode, 8)
    try:
        args = im.tile[0].args if im.tile else None
        raw = args if isinstance(args, str) else (args[0] if isinstance(args, tuple) and args else "")
        found = re.search(r";(\d+)", raw) if isinstance(raw, str) else None
        if found:
            bits = int(found.group(1))
    except (AttributeError, IndexError, TypeError):
        pass
    return bits


def _jpeg_fields(im) -> dict:
    quality, exact, sampling = np.nan, None, None
    tables = getattr(im, "quantization", None) or {}
    if 0 in tables:
        quality, exact = jpeg_quality(tables[0])
    layers = getattr(im, "layer", None) or []
    if len(layers) == 3:
        (_, yh, yv, _), (_, ch, cv, _) = layers[0], layers[1]
        if ch and cv and yh % ch == 0 and yv % cv == 0:
            ratio = (yh // ch, yv // cv)
            sampling = _SUBSAMPLING.get(ratio, f"{ratio[0]}x{ratio[1]}")
        else:
            sampling = f"{yh}x{yv}/{ch}x{cv}"
    return {"jpeg_quality": quality, "jpeg_ijg_table": exact, "jpeg_subsampling": sampling,
            "chroma_subsampled": None if sampling is None else sampling != "4:4:4"}


def read_metadata(path: str | os.PathLike) -> dict:
    """The METADATA_COLUMNS of one image file, from its header (no pixel is decoded); DataError naming it."""
    path = Path(path)
    im = _open(path, None)   # the data layer's checks: missing, empty, not an image, corrupt header, bomb
    try:
        w, h = im.size
        row = {"format": im.format or "unknown", "mode": im.mode, "bit_depth": _bit_depth(im),
               "width": w, "height": h, "aspect": w / h, "file_bytes": os.path.getsize(path)}
        row["bytes_per_pixel"] = row["file_bytes"] / (w * h)
        row.update({"jpeg_quality": np.nan, "jpeg_ijg_table": None, "jpeg_subsampling": None,
                    "chroma_subsampled": None})
        if isinstance(im, JpegImagePlugin.JpegImageFile):
            try:
                row.update(_jpeg_fields(im))
            except (ValueError, TypeError, KeyError) as e:
                raise DataError(f"image file {path} has a JPEG header whose quantisation tables or sampling "
                                f"factors cannot be read ({e}); re-encode it or load with on_bad='skip'") from None
        return row
    finally:
        im.close()


def file_metadata(frame: pd.DataFrame, on_bad: str = "raise") -> pd.DataFrame:
    """Per image of `frame` (rows of `StudyData.frame` or a split: path, generator, subclass, split), what its
    file header says: format, mode, bit_depth (per channel), width, height, aspect (width / height),
    file_bytes, bytes_per_pixel, and for JPEG jpeg_quality (see `jpeg_quality` for the method),
    jpeg_ijg_table, jpeg_subsampling ("4:2:0", ...) and chroma_subsampled. Non-JPEG rows hold NaN/None there.

    Only headers are read (Pillow's lazy open), through the data layer's safe open, so its checks and its
    MAX_IMAGE_PIXELS limit apply. on_bad: "raise" (a DataError naming the file) or "skip" (the row is left
    out, listed with its reason in `result.attrs["skipped"]`, and one warning says how many). A file whose
    header is intact but whose pixel data is truncated passes here; `verify_images` decodes and finds it.
    """
    if on_bad not in ("raise", "skip"):
        raise DataError(f"on_bad is {on_bad!r}; valid choices: raise, skip")
    if "path" not in frame.columns:
        raise DataError(f"the frame has no 'path' column (columns: {list(frame.columns)}); pass StudyData.frame "
                        "or one of its splits")
    keep = [c for c in IDENTITY_COLUMNS if c in frame.columns]
    rows, skipped = [], []
    for record in frame[keep].to_dict("records"):
        try:
            rows.append({**record, **read_metadata(Path(record["path"]))})
        except DataError as err:
            if on_bad == "raise":
                raise
            skipped.append((record["path"], str(err)))
    out = pd.DataFrame(rows, columns=keep + list(METADATA_COLUMNS))
    out.attrs["skipped"] = skipped
    if skipped:
        shown = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        warnings.warn(f"file_metadata: skipped {len(skipped)} unreadable file(s) (see .attrs['skipped']): "
                      f"{shown}{more}", stacklevel=2)
    return out


# --------------------------------------------------------------------------------------------- the audit
@dataclass(frozen=True)
class Cue:
    """One cue family: what it is, and the columns of `cue_features` it is made of."""

    what: str
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()


# Each cue family is judged alone; "metadata" puts every file cue together (content is not metadata).
# bytes_per_pixel is tabulated but is no cue: a PNG's compression ratio depends on the pixels' noise, and
# so partly on the very fingerprint the study is after.
CUES = {
    "format": Cue("file format", ("format",)),
    "jpeg_quality": Cue("JPEG quality + chroma subsampling", ("jpeg_setting",)),
    "size": Cue("width x height", ("size",), ("log_width", "log_height")),
    "aspect": Cue("aspect ratio", ("aspect_ratio",), ("log_aspect",)),
    "mode": Cue("colour mode + bit depth", ("mode_bits",)),
    "jpeg_history": Cue("JPEG history in lossless files (8x8 blockiness)", ("history",), ("log_blockiness",)),
    "subclass": Cue("content subclass", ("subclass",)),
    "metadata": Cue("format + quality + size + aspect + mode",
                    ("format", "jpeg_setting", "size", "aspect_ratio", "mode_bits"),
                    ("log_width", "log_height", "log_aspect")),
}
# How a flagged cue is named in a warning.
_CUE_WORDS = {"format": "file format", "jpeg_quality": "JPEG quality", "size": "image size", "aspect": "aspect ratio",
              "mode": "colour mode", "jpeg_history": "JPEG history", "subclass": "content subclass", "metadata": "its file metadata combined"}
# The column whose values describe a cue in a warning.
_CUE_COLUMN = {"format": "format", "jpeg_quality": "jpeg_setting", "size": "size", "aspect": "aspect_ratio",
               "mode": "mode_bits", "jpeg_history": "history", "subclass": "subclass"}


class ShortcutWarning(UserWarning):
    """A generator can be told apart by something other than its fingerprint, or has too few images."""


def cue_features(meta: pd.DataFrame) -> pd.DataFrame:
    """The classifier's input columns (labels and logs) from a `file_metadata` frame."""
    q = meta["jpeg_quality"]
    jpeg = q.notna()
    setting = pd.Series("non-JPEG", index=meta.index, dtype=object)
    sampling = meta.loc[jpeg, "jpeg_subsampling"].fillna("").astype(str)
    setting[jpeg] = ("JPEG q" + q[jpeg].astype(int).astype(str) + " " + sampling).str.strip()
    is_jpeg_format = meta["format"].isin(["JPEG", "MPO"])
    setting[is_jpeg_format & ~jpeg] = "JPEG, no quantisation table"
    block = meta["blockiness"].astype(float) if "blockiness" in meta else pd.Series(np.nan, index=meta.index)
    history = pd.Series(np.where(block >= JPEG_HISTORY, "JPEG history", "clean"), index=meta.index, dtype=object)
    history[block.isna()] = "unknown"
    history[is_jpeg_format] = "JPEG file"
    return pd.DataFrame({
        "format": meta["format"].astype(str),
        "jpeg_setting": setting,
        "size": meta["width"].astype(str) + "x" + meta["height"].astype(str),
        "log_width": np.log2(meta["width"].astype(float)),
        "log_height": np.log2(meta["height"].astype(float)),
        "aspect_ratio": [_ratio(w, h) for w, h in zip(meta["width"], meta["height"])],
        "log_aspect": np.log2(meta["aspect"].astype(float)),
        "mode_bits": meta["mode"].astype(str) + " " + meta["bit_depth"].astype(str) + "-bit",
        "history": history,
        "log_blockiness": np.log(block.fillna(1.0).clip(lower=1.0)),
        "subclass": meta["subclass"].astype(str) if "subclass" in meta else "",
    }, index=meta.index)


def _ratio(w: int, h: int) -> str:
    """'3:2' for 48x32; near ratios are merged (1023x1024 is '1:1')."""
    r = Fraction(int(w), int(h)).limit_denominator(16)
    return f"{r.numerator}:{r.denominator}"


def _shares(column: pd.Series, generator: pd.Series, generators: Sequence[str]) -> pd.DataFrame:
    t = pd.crosstab(generator, column, normalize="index").reindex(index=list(generators), fill_value=0.0)
    t.index.name, t.columns.name = "generator", column.name
    return t


@dataclass
class Audit:
    """What `shortcut_audit` found. Per-generator tables (rows: generators) and one row per cue family.

    counts       images per generator in the audited split
    formats      share of each file format;  modes: share of each "mode bits" label;  subclasses: of each subclass
    jpeg         JPEG share and count, quality min / median / max, share chroma-subsampled, share IJG tables
    sizes        width, height, aspect (min / median / max), distinct sizes, most common size and its share,
                 median bytes per pixel
    cues         per cue: what, balanced_accuracy, chance, n_values, n_folds, flagged, leaning, verdict (see `table`)
    recall, precision   generator x cue, of the cross-validated cue-only classifier
    warnings     plain-words warnings (also raised once as one ShortcutWarning)
    metadata     the `file_metadata` rows audited, with `blockiness` and `jpeg_history` (`pixels`)
    skipped      (path, reason) of files left out
    history      per generator: lossless images, the share with JPEG history, median blockiness, flagged
    duplicates   near-duplicate groups (perceptual hash, `pixels.near_duplicate_groups`) among all the images
                 given (a StudyData: every image of the folder, set-aside ones included): group, images,
                 generators, subclasses, examples
    set_aside    what the rotation set aside, in words (`StudyData.set_aside_summary`: dropped generators and
                 their unattributable test images, near-duplicates kept out of training)
    """

    split: str
    counts: pd.Series
    formats: pd.DataFrame
    modes: pd.DataFrame
    subclasses: pd.DataFrame
    jpeg: pd.DataFrame
    sizes: pd.DataFrame
    cues: pd.DataFrame
    recall: pd.DataFrame
    precision: pd.DataFrame
    warnings: list[str]
    metadata: pd.DataFrame
    min_images: int = MIN_IMAGES
    skipped: list = field(default_factory=list)
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    duplicates: pd.DataFrame = field(default_factory=pd.DataFrame)
    set_aside: str = ""

    @property
    def generators(self) -> list[str]:
        return list(self.counts.index)

    def flagged(self) -> dict[str, list[str]]:
        """generator -> the single cues (not "metadata") that tell it apart."""
        out: dict[str, list[str]] = {}
        for cue in self.recall.columns:
            if cue == "metadata":
                continue
            for g in self.cues.at[cue, "flagged"]:
                out.setdefault(g, []).append(cue)
        return out

    def table(self) -> pd.DataFrame:
        """Cue x (what, balanced_accuracy, chance, verdict), captioned, for `attrlib.reporting.save_table`."""
        t = self.cues[["what", "balanced_accuracy", "chance", "verdict"]].copy()
        t.attrs["caption"] = (
            f"Shortcut audit ({self.split} split, {int(self.counts.sum())} images, {len(self.counts)} generators): "
            "balanced accuracy of a cross-validated logistic regression predicting the generator from one cue "
            f"alone; chance is 1/{len(self.counts)}. A generator is flagged when the cue-only classifier finds at "
            f"least {FLAG_RECALL:.0%} of its images with precision at least {FLAG_PRECISION:.0%} and well above "
            f"its share; it is partly told apart when the classifier finds at least {LEAN_RECALL:.0%} of its images "
            f"with precision at least {LEAN_PRECISION:.0%} and {LEAN_LIFT:g}x its share.")
        return t

    def generator_tables(self) -> dict[str, pd.DataFrame]:
        """The per-generator tables by name (formats, jpeg, sizes, modes, subclasses, recall)."""
        return {"formats": self.formats, "jpeg": self.jpeg, "jpeg_history": self.history, "sizes": self.sizes,
                "modes": self.modes, "subclasses": self.subclasses, "recall": self.recall}

    def summary(self) -> str:
        """Every table and the warnings as plain text (what `attrlib audit` prints)."""
        parts = [f"Shortcut audit of the {self.split} split: {int(self.counts.sum())} images, "
                 f"{len(self.counts)} generators"]
        if self.skipped:
            parts.append(f"(skipped {len(self.skipped)} unreadable file(s))")
        parts.append("\nCues (cross-validated logistic regression on one cue; chance = 1/n_generators):\n"
                     + self.table().to_string(float_format=lambda v: f"{v:.2f}"))
        for name, t in self.generator_tables().items():
            parts.append(f"\n{name} per generator:\n" + t.to_string(float_format=lambda v: f"{v:.2f}"))
        if len(self.duplicates):
            parts.append(f"\nNear-duplicate groups (perceptual hash): {len(self.duplicates)} groups, "
                         f"{int(self.duplicates['images'].sum())} images; every split keeps a group on one side\n"
                         + self.duplicates.to_string(index=False))
        else:
            parts.append("\nNear-duplicate groups (perceptual hash): none")
        if self.set_aside:
            parts.append("\nSet aside by this rotation:\n" + "\n".join(f"- {line}" for line in self.set_aside.splitlines()))
        parts.append("\nWarnings:" if self.warnings else "\nWarnings: none")
        parts.extend(f"- {w}" for w in self.warnings)
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.summary()


def _rows(data_or_frame, split: str | None, on_bad: str | None) -> tuple[pd.DataFrame, str, str, list]:
    """(rows of the split, split name, on_bad, skipped-at-discovery) of StudyData, a frame or file_metadata."""
    skipped = []
    if hasattr(data_or_frame, "frame") and hasattr(data_or_frame, "split"):   # StudyData
        frame = data_or_frame.frame
        on_bad = on_bad or getattr(data_or_frame, "on_bad", "raise")
        skipped = list(getattr(data_or_frame, "skipped", []))
    elif isinstance(data_or_frame, pd.DataFrame):
        frame = data_or_frame
    else:
        raise DataError(f"shortcut_audit needs a StudyData (load_study_data) or a DataFrame of its rows, "
                        f"not {type(data_or_frame).__name__}")
    for column in ("path", "generator"):
        if column not in frame.columns:
            raise DataError(f"the frame has no {column!r} column (columns: {list(frame.columns)}); pass a StudyData, "
                            "its .frame, a split of it or file_metadata's result")
    if split in (None, "all"):
        return frame, "all", on_bad or "raise", skipped
    if "split" not in frame.columns:
        raise DataError(f"split={split!r} asked for, but the frame has no 'split' column; pass split='all'")
    values = sorted(frame["split"].dropna().astype(str).unique())
    if split not in values:
        raise DataError(f"no image is in split {split!r}; this data has splits {values} (or pass split='all')")
    return frame[frame["split"] == split].reset_index(drop=True), split, on_bad or "raise", skipped


def _evaluate(features: pd.DataFrame, y: np.ndarray, cue: Cue, folds: int, seed: int) -> np.ndarray:
    """Cross-validated predictions of a logistic regression on one cue's columns (one-hot / standardised).
    Classes are weighted by inverse frequency so a small generator is not drowned by a large one."""
    parts = []
    if cue.categorical:
        parts.append(("onehot", OneHotEncoder(handle_unknown="ignore"), list(cue.categorical)))
    if cue.numeric:
        parts.append(("scale", StandardScaler(), list(cue.numeric)))
    model = make_pipeline(ColumnTransformer(parts), LogisticRegression(max_iter=2000, class_weight="balanced"))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cross_val_predict(model, features[list(cue.categorical + cue.numeric)], y, cv=cv)


def _describe(values: pd.Series) -> str:
    """'all PNG' / 'PNG (93%), JPEG (7%)' (at most three values named)."""
    shares = values.value_counts(normalize=True)
    if len(shares) == 1:
        return f"all {shares.index[0]}"
    named = ", ".join(f"{v} ({s:.0%})" for v, s in shares.iloc[:3].items())
    return named + (f" and {len(shares) - 3} more" if len(shares) > 3 else "")


def _flag_rule(recall: float, precision: float, share: float) -> bool:
    return bool(recall >= FLAG_RECALL and precision >= max(FLAG_PRECISION, share + PRECISION_MARGIN * (1 - share)))


def _lean_rule(recall: float, precision: float, share: float) -> bool:
    return bool(recall >= LEAN_RECALL and precision >= min(FLAG_PRECISION, max(LEAN_PRECISION, LEAN_LIFT * share)))


def shortcut_audit(data_or_frame, split: str | None = "train", min_images: int = MIN_IMAGES, cv: int = 5,
                   seed: int = 0, on_bad: str | None = None) -> Audit:
    """Audit one split of a study's images for shortcuts a model can take instead of the fingerprint.

    data_or_frame: a StudyData, a frame of its rows, or `file_metadata`'s result (headers are not read again).
    split: "train" (default: what the model learns from), "val", "test", or "all"/None for every row.
    min_images: generators with fewer images in the split are warned about (default 20: below it a generator
        is a handful of batches for the model, its recall moves in steps of 5 points or more, and stratified
        5-fold CV holds fewer than 4 of its images per fold).
    cv, seed: stratified K-fold with K = min(cv, the smallest generator's image count), shuffled with seed.
        Generators with a single image cannot be cross-validated and are left out of the classifiers (warned).
    on_bad: "raise" or "skip" for unreadable files (default: the StudyData's own, else "raise").

    For each cue family in CUES a scikit-learn LogisticRegression (one-hot categorical and standardised
    numeric columns, balanced class weights) predicts the generator from that cue alone, by
    `cross_val_predict`. Reported: balanced accuracy against chance (1 / n_generators), and per generator
    recall and precision. Rule: a generator is told apart by a cue when the cue-only classifier finds
    at least 90% of its images (recall >= FLAG_RECALL) and is right at least 90% of the times it names it
    (precision >= FLAG_PRECISION), that precision also being at least halfway from the generator's share
    of the images to 1 (naming a very large generator for every image would otherwise pass). Every single
    cue that tells a generator apart gives one plain-words warning per generator; a generator told apart by
    the metadata combined but by no single cue gets its own. The warnings are returned in `Audit.warnings`
    and raised once, together, as a ShortcutWarning.
    """
    frame, split_name, on_bad, skipped = _rows(data_or_frame, split, on_bad)
    duplicates = _duplicates(data_or_frame)
    set_aside = data_or_frame.set_aside_summary() if hasattr(data_or_frame, "set_aside_summary") else ""
    if all(c in frame.columns for c in METADATA_COLUMNS):
        meta = frame.reset_index(drop=True)
        skipped += list(frame.attrs.get("skipped", []))
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            meta = file_metadata(frame, on_bad=on_bad)
        skipped += meta.attrs.get("skipped", [])
        for w in caught:
            if "skipped" not in str(w.message):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if meta.empty:
        raise DataError(f"no readable image in split {split_name!r}; nothing to audit")
    if "subclass" not in meta.columns:
        meta["subclass"] = ""
    if "blockiness" not in meta.columns:   # one decode per image (cached in this process: `pixels`)
        pixels = pixel_statistics(meta, on_bad="skip")
        meta["blockiness"], meta["jpeg_history"] = pixels["blockiness"].to_numpy(), pixels["jpeg_history"].to_numpy()
    generators = sorted(meta["generator"].astype(str).unique())
    gen = meta["generator"].astype(str).rename("generator")
    features = cue_features(meta)
    counts = gen.value_counts().reindex(generators).rename("images")
    counts.index.name = "generator"
    chance = 1.0 / len(generators)
    images = {"train": "training images", "val": "validation images", "test": "test images"}.get(split_name, "images")

    # per-generator distributions
    formats = _shares(features["format"], gen, generators)
    modes = _shares(features["mode_bits"], gen, generators)
    subclasses = _shares(features["subclass"], gen, generators)
    jpeg_rows = meta["jpeg_quality"].notna()
    by = meta.groupby(gen)
    jq = meta.loc[jpeg_rows].groupby(gen[jpeg_rows])
    jpeg = pd.DataFrame({
        "jpeg_share": by["format"].apply(lambda f: f.isin(["JPEG", "MPO"]).mean()),
        "jpeg_images": jq.size(),
        "quality_min": jq["jpeg_quality"].min(), "quality_median": jq["jpeg_quality"].median(),
        "quality_max": jq["jpeg_quality"].max(),
        "subsampled_share": jq["chroma_subsampled"].apply(lambda s: s.astype(float).mean()),
        "ijg_table_share": jq["jpeg_ijg_table"].apply(lambda s: s.astype(float).mean()),
    }).reindex(generators)
    jpeg["jpeg_images"] = jpeg["jpeg_images"].fillna(0).astype(int)
    top = features.groupby(gen)["size"].agg(lambda s: s.value_counts().index[0])
    sizes = pd.DataFrame({
        "images": counts,
        "width_min": by["width"].min(), "width_median": by["width"].median(), "width_max": by["width"].max(),
        "height_min": by["height"].min(), "height_median": by["height"].median(), "height_max": by["height"].max(),
        "aspect_min": by["aspect"].min(), "aspect_median": by["aspect"].median(), "aspect_max": by["aspect"].max(),
        "distinct_sizes": features.groupby(gen)["size"].nunique(),
        "top_size": top,
        "top_size_share": features.groupby(gen)["size"].agg(lambda s: s.value_counts(normalize=True).iloc[0]),
        "bytes_per_pixel_median": by["bytes_per_pixel"].median(),
    }).reindex(generators)
    for t in (jpeg, sizes):
        t.index.name = "generator"
    history = _history_table(meta, gen, generators)

    # one classifier per cue
    texts: list[str] = []
    usable = [g for g in generators if counts[g] >= 2]
    if len(usable) < len(generators):
        lone = [g for g in generators if g not in usable]
        texts.append(f"{', '.join(lone)}: a single one of the {images}, too few to cross-validate; "
                     "left out of the cue classifiers")
    rows = gen.isin(usable).to_numpy()
    y = gen[rows].to_numpy()
    folds = int(min(cv, counts[usable].min())) if usable else 0
    share = counts / counts[usable].sum() if usable else counts * 0.0
    recall = pd.DataFrame(np.nan, index=pd.Index(generators, name="generator"), columns=list(CUES))
    precision = recall.copy()
    cue_rows = {}
    for name, cue in CUES.items():
        n_values = int(features.loc[rows, list(cue.categorical) or list(cue.numeric)].drop_duplicates().shape[0])
        row = {"what": cue.what, "balanced_accuracy": np.nan, "chance": chance, "n_values": n_values,
               "n_folds": folds, "flagged": [], "leaning": []}
        if len(usable) >= 2 and folds >= 2:
            pred = _evaluate(features[rows], y, cue, folds, seed)
            row["balanced_accuracy"] = balanced_accuracy_score(y, pred)
            recall.loc[usable, name] = recall_score(y, pred, labels=usable, average=None, zero_division=0)
            precision.loc[usable, name] = precision_score(y, pred, labels=usable, average=None, zero_division=0)
            row["flagged"] = [g for g in usable if _flag_rule(recall.at[g, name], precision.at[g, name], share[g])]
            row["leaning"] = [g for g in usable if g not in row["flagged"]
                              and _lean_rule(recall.at[g, name], precision.at[g, name], share[g])]
        if name == "jpeg_history":   # shared by several generators: flagged by its share, not by a classifier
            row["flagged"] = sorted(set(row["flagged"]) | set(history.index[history["flagged"]]))
            row["leaning"] = [g for g in row["leaning"] if g not in row["flagged"]]
        row["verdict"] = _verdict(row, chance)
        cue_rows[name] = row
    cues = pd.DataFrame.from_dict(cue_rows, orient="index")
    cues.index.name = "cue"

    # warnings in plain words
    def evidence(g: str, c: str, against: str = "") -> str:
        mine, others = gen == g, gen != g
        return (f"(recall {recall.at[g, c]:.2f}, precision {precision.at[g, c]:.2f}{against}): its {images} are "
                f"{_describe(features.loc[mine, _CUE_COLUMN[c]])}, the other generators' are "
                f"{_describe(features.loc[others, _CUE_COLUMN[c]])}")

    for g in generators:
        if history.at[g, "flagged"]:
            texts.append(f"{g}'s lossless files carry JPEG history (8x8 block artefacts of an earlier JPEG "
                         f"compression, median blockiness {history.at[g, 'blockiness_median']:.2f}): "
                         f"{history.at[g, 'history_share']:.0%} of its {int(history.at[g, 'lossless'])} lossless "
                         f"{images} against {history.at[g, 'others_share']:.0%} of the other generators'. A model "
                         "can tell its images from the clean ones by these artefacts instead of its fingerprint.")
        single = [c for c in CUES if c not in ("metadata", "jpeg_history") and g in cues.at[c, "flagged"]]
        single += ["jpeg_history"] if g in cues.at["jpeg_history", "flagged"] and not history.at[g, "flagged"] else []
        if single:
            said = "; ".join(f"by {_CUE_WORDS[c]} alone {evidence(g, c)}" for c in single)
            texts.append(f"{g} can be told apart {said}. A model can identify {g} by "
                         f"{'this' if len(single) == 1 else 'these'} instead of its fingerprint.")
        elif g in cues.at["metadata", "flagged"]:
            texts.append(f"{g} can be told apart by its file metadata combined (format, JPEG quality, size, aspect, "
                         f"mode; recall {recall.at[g, 'metadata']:.2f}, precision {precision.at[g, 'metadata']:.2f}) "
                         "though by no single cue. A model can identify it by these instead of its fingerprint.")
        leans = [c for c in CUES if c != "metadata" and c not in single and g in cues.at[c, "leaning"]]
        if leans:
            said = "; ".join(f"{_CUE_WORDS[c]} {evidence(g, c, f' against its {share[g]:.0%} share')}" for c in leans)
            texts.append(f"{g} is partly told apart by {said}. A model can use "
                         f"{'this' if len(leans) == 1 else 'these'} for many of its images.")
    few = [g for g in generators if counts[g] < min_images]
    for g in few:
        texts.append(f"{g} has only {counts[g]} {images}, fewer than {min_images}: a model sees it in a "
                     "handful of batches and its accuracy is measured in coarse steps; add images or expect "
                     "noisy results for it.")
    if skipped:
        texts.append(f"{len(skipped)} unreadable file(s) were left out (see Audit.skipped)")
    if texts:
        warnings.warn(f"shortcut audit of the {split_name} split: {len(texts)} warning(s):\n"
                      + "\n".join(f"- {t}" for t in texts), ShortcutWarning, stacklevel=2)
    return Audit(split=split_name, counts=counts, formats=formats, modes=modes, subclasses=subclasses, jpeg=jpeg,
                 sizes=sizes, cues=cues, recall=recall, precision=precision, warnings=texts, metadata=meta,
                 min_images=min_images, skipped=skipped, history=history, duplicates=duplicates,
                 set_aside=set_aside)


def _history_table(meta: pd.DataFrame, gen: pd.Series, generators: Sequence[str]) -> pd.DataFrame:
    """Per generator: lossless images (not JPEG files), the share of them with JPEG history, the same share
    among the other generators' lossless images, median blockiness, and the HISTORY_SHARE / HISTORY_LIFT flag."""
    lossless = ~meta["format"].isin(["JPEG", "MPO"]) & meta["blockiness"].notna()
    marked = meta["jpeg_history"].astype(bool) & lossless
    rows = {}
    for g in generators:
        mine = (gen == g).to_numpy()
        n, n_other = int((lossless & mine).sum()), int((lossless & ~mine).sum())
        share = float(marked[mine].sum() / n) if n else float("nan")
        others = float(marked[~mine].sum() / n_other) if n_other else float("nan")
        rows[g] = {"lossless": n, "history_share": share, "others_share": others,
                   "blockiness_median": float(meta.loc[lossless & mine, "blockiness"].median()) if n else float("nan"),
                   "flagged": bool(n >= 2 and share >= HISTORY_SHARE and not others * HISTORY_LIFT > share)}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "generator"
    return out


def _duplicates(data_or_frame) -> pd.DataFrame:
    """The near-duplicate groups among every image given: a StudyData's whole folder (set-aside rows too), or
    the rows of a frame."""
    if hasattr(data_or_frame, "set_aside"):
        columns = ["path", "generator", "subclass"]
        frame = pd.concat([data_or_frame.frame[columns], data_or_frame.set_aside[columns]], ignore_index=True)
    else:
        frame = data_or_frame.reset_index(drop=True)
        if "subclass" not in frame:
            frame = frame.assign(subclass="")
    hashes = pixel_statistics(frame, on_bad="skip")["phash"]
    return duplicate_table(frame, near_duplicate_groups(hashes, within=frame["generator"]))


def _verdict(row: dict, chance: float) -> str:
    acc = row["balanced_accuracy"]
    if np.isnan(acc):
        return "not evaluated: fewer than two generators with two images"
    if row["n_values"] <= 1:
        return "no signal: one value for every image"
    if row["flagged"]:
        return "shortcut: tells apart " + ", ".join(row["flagged"]) + (
            "; partly " + ", ".join(row["leaning"]) if row["leaning"] else "")
    if row["leaning"]:
        return "partial shortcut: partly tells apart " + ", ".join(row["leaning"])
    if acc >= chance + PARTIAL_CUE * (1 - chance):
        return "partial cue: above chance, no generator told apart"
    return "near chance"
