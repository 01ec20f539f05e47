"""Where the images are and what their labels say: folder discovery and manifest validation.

Two layouts are read, and the embedded benchmark writes the same ones a user may bring:

- a folder `<root>/<generator>/<subclass>/.../<image>`; folders whose name starts with `_` or `.` are not
  data (the benchmark keeps its object masks in `_masks/`), other files (benchmark.json, README) are ignored;
  an object mask, if any, is `<root>/_masks/<same relative path, suffix .png>`;
- a manifest CSV (`<root>/manifest.csv`, used when present, or any CSV path given directly) with columns
  `path, generator, subclass` and optional `split` (train | val | test | pool, empty = let attrlib decide),
  `mask` and `instance`; paths are relative to the manifest's folder and must stay inside it. `test` and
  `pool` mean the same: the image belongs to its subclass's test pool, which is the test set when that
  subclass is held out and is not used otherwise (the embedded benchmark renders a pool for every subclass,
  so any subclass can be held out). `instance` names the generator x subclass cell whose model rendered the
  image when it differs from the image's content (the simulator's instance-matched variant); empty means
  the image's own subclass. `group` names a set of near-duplicates (one seed rendered twice, variants of
  one prompt and seed) that every split keeps on one side; empty means the image is a group of its own.
  Without the column, `load_study_data` detects the groups itself (`pixels.near_duplicate_groups`). In the
  frame it is column `duplicate_group` (`group` is the generator x subclass label of `label_codes`).

Only structure is checked here, eagerly and cheaply (no pixel is decoded): every row is validated and the
first few offenders of each kind are reported together with their CSV line numbers, so one run of the
loader shows everything to fix. Problems with one file (missing, wrong extension, misplaced) can be
skipped with `on_bad="skip"`; problems with labels or the manifest itself always raise, because skipping
them could leave a silently wrong label.
"""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .images import IMAGE_EXTENSIONS, is_image_path

MANIFEST_NAME = "manifest.csv"
REQUIRED_COLUMNS = ("path", "generator", "subclass")
OPTIONAL_COLUMNS = ("split", "mask", "instance", "group")
SPLIT_VALUES = ("train", "val", "test", "pool")
MASKS_DIR = "_masks"
SOURCE_COLUMNS = ("path", "generator", "subclass", "split", "mask", "instance", "duplicate_group", "line")
SHOW = 5  # offenders listed per kind of problem; the rest are counted


@dataclass
class Source:
    """What discovery found: rows (path, generator, subclass, split, mask, instance, line) and the files skipped."""

    frame: pd.DataFrame                         # SOURCE_COLUMNS
    root: Path
    kind: str                                   # "folder" | "manifest"
    where: str                                  # how to name the source in messages
    skipped: list = field(default_factory=list)  # (path, reason)
    has_group: bool = False                     # the manifest has a `group` column (near-duplicate groups)


def is_hidden_or_private(name: str) -> bool:
    """Folder names starting with '_' or '.' hold masks, caches or system files, never data."""
    return name.startswith(("_", "."))


def _listing(items: list[str], total: int | None = None) -> str:
    total = len(items) if total is None else total
    shown = "\n".join(f"  {s}" for s in items[:SHOW])
    more = f"\n  ... and {total - SHOW} more" if total > SHOW else ""
    return shown + more


def format_problem(title: str, items: list[str], advice: str) -> str:
    return f"{title}:\n{_listing(items)}\n  -> {advice}"


def discover(source: str | os.PathLike, on_bad: str = "raise") -> Source:
    """Find the images of a folder or manifest and validate their structure (no decoding)."""
    if on_bad not in ("raise", "skip"):
        raise DataError(f"on_bad is {on_bad!r}; valid choices: raise, skip")
    p = Path(source).expanduser()
    if not p.exists():
        raise DataError(f"data path {p} does not exist; pass the folder that holds <generator>/<subclass>/ "
                        "image folders, or a manifest CSV (the embedded benchmark is created with `attrlib synth`)")
    if p.is_file():
        if p.suffix.lower() != ".csv":
            raise DataError(f"data path {p} is a file but not a .csv manifest; pass a folder of "
                            "<generator>/<subclass>/ images or a manifest CSV with columns path, generator, subclass")
        return _cached_manifest(p, on_bad)
    if (p / MANIFEST_NAME).is_file():
        return _cached_manifest(p / MANIFEST_NAME, on_bad)
    return scan_folder(p, on_bad)


_MANIFESTS: dict[tuple, Source] = {}  # (real path, on_bad, the CSV's SHA-1) -> what read_manifest found
_MANIFESTS_KEPT = 16


def _cached_manifest(csv_path: Path, on_bad: str) -> Source:
    """`read_manifest`, once per process for an unchanged CSV: a notebook loads the embedded benchmark's manifest
    (thousands of rows, each path resolved and checked) for every run it reads, 16 times in notebook 08 of the
    quick study. The key is the CSV's content, so an edited manifest is read again whatever its timestamps; each
    caller gets its own copy of the frame. A listed file deleted after the first read in the same process is not
    seen here: decoding it fails naming it (`attrlib.data.images`)."""
    try:
        content = hashlib.sha1(csv_path.read_bytes()).hexdigest()
    except OSError:
        return read_manifest(csv_path, on_bad)  # it reports what is wrong with the file
    key = (os.path.realpath(csv_path), on_bad, content)
    if key not in _MANIFESTS:
        if len(_MANIFESTS) >= _MANIFESTS_KEPT:
            _MANIFESTS.pop(next(iter(_MANIFESTS)))
        _MANIFESTS[key] = read_manifest(csv_path, on_bad)
    found = _MANIFESTS[key]
    return replace(found, frame=found.frame.copy(), skipped=list(found.skipped))


def _walk(root: Path):
    """os.walk following symlinked folders (users link datasets in) but never the same real folder twice."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not is_hidden_or_private(d))
        yield dirpath, dirnames, filenames


def scan_folder(root: Path, on_bad: str = "raise") -> Source:
    """Rows of `<root>/<generator>/<subclass>/.../<image>`; masks from `<root>/_masks/` when present."""
    root = Path(os.path.abspath(root))
    where = f"folder {root}"
    masks: set[str] = set()
    mask_root = root / MASKS_DIR
    if mask_root.is_dir():
        for dirpath, _, filenames in os.walk(mask_root, followlinks=True):
            rel = os.path.relpath(dirpath, mask_root)
            masks.update(os.path.normpath(os.path.join(rel, f)) for f in filenames)
    rows, misplaced = [], []
    for dirpath, _, filenames in _walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        parts = [] if rel_dir == "." else Path(rel_dir).parts
        for name in sorted(filenames):
            if name.startswith(".") or not is_image_path(name):
                continue  # README, benchmark.json, .DS_Store, macOS '._x.png' resource forks
            path = os.path.join(dirpath, name)
            if len(parts) < 2:
                misplaced.append(path)
                continue
            mask_rel = os.path.normpath(os.path.join(*parts, Path(name).stem + ".png"))
            mask = str(mask_root / mask_rel) if mask_rel in masks else ""
            rows.append((path, parts[0], parts[1], "", mask, "", "", 0))
    frame = pd.DataFrame(rows, columns=list(SOURCE_COLUMNS))
    skipped = []
    if misplaced:
        reason = "image is not inside a <generator>/<subclass>/ folder, so it has no labels"
        if on_bad == "raise" or not rows:
            raise DataError(format_problem(
                f"{where}: {len(misplaced)} image(s) are not inside a <generator>/<subclass>/ folder, so they have no labels",
                misplaced, "move them to <root>/<generator>/<subclass>/, or load with on_bad='skip' to ignore them"))
        skipped = [(p, reason) for p in misplaced]
    if frame.empty:
        private = any(d.is_dir() and is_hidden_or_private(d.name) for d in root.iterdir())
        extra = " (folders starting with '_' or '.' are ignored: they hold masks and caches)" if private else ""
        raise DataError(f"{where} contains no images{extra}; expected <root>/<generator>/<subclass>/<image> "
                        f"with extensions {', '.join(IMAGE_EXTENSIONS)}, or a {MANIFEST_NAME}")
    return Source(frame, root, "folder", where, skipped)


def _realpath(path: str, real_dirs: dict[str, str] | None) -> str:
    """os.path.realpath(path), resolving each folder once: realpath(d/name) is realpath(realpath(d)/name), so
    a manifest of thousands of files in a few folders costs one lstat per file instead of one per component."""
    if real_dirs is None:
        return os.path.realpath(path)
    folder, name = os.path.split(os.path.abspath(path))
    if folder not in real_dirs:
        real_dirs[folder] = os.path.realpath(folder)
    joined = os.path.join(real_dirs[folder], name)  # abspath normalised it: `name` is neither "." nor ".."
    return os.path.realpath(joined) if os.path.islink(joined) else joined  # one lstat


def _resolve_inside(root_real: str, base: Path, value: str,
                    real_dirs: dict[str, str] | None = None) -> tuple[str, str | None]:
    """(absolute path, problem or None): relative to `base`, symlinks resolved, must stay inside root.
    `real_dirs`: a cache of resolved folders shared by the rows of one manifest (`_realpath`)."""
    if os.sep == "/" and "\\" in value:
        value = value.replace("\\", "/")  # a manifest written on Windows
    p = Path(value).expanduser()
    absolute = p if p.is_absolute() else base / p
    real = _realpath(str(absolute), real_dirs)
    if os.path.commonpath([real, root_real]) != root_real:
        return str(absolute), f"resolves to {real}, outside the manifest's folder {root_real}"
    return os.path.abspath(absolute), None


def read_manifest(csv_path: Path, on_bad: str = "raise") -> Source:
    """Read and validate a manifest CSV; every row is checked and offenders are listed by CSV line."""
    csv_path = Path(os.path.abspath(csv_path))
    where = f"manifest {csv_path}"
    root = csv_path.parent
    try:
        # Everything as text and no NA guessing: a subclass called "NA" or "None" stays a label, and an
        # empty cell stays "" so it is reported as empty instead of becoming NaN. Blank lines are kept as
        # rows so that index + 2 is the CSV line number in every message.
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_filter=False,
                          skip_blank_lines=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"{where} is empty; it needs a header line 'path,generator,subclass' and one row per image") from None
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{where} cannot be parsed as CSV ({e}); save it as UTF-8 CSV with a header line "
                        "'path,generator,subclass[,split][,mask]'") from None
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"{where} lacks required column(s) {', '.join(missing)} (columns found: "
                        f"{', '.join(map(str, raw.columns)) or 'none'}); the header must name "
                        f"{', '.join(REQUIRED_COLUMNS)} and optionally {', '.join(OPTIONAL_COLUMNS)}")
    dup_cols = sorted({c for c in raw.columns if list(raw.columns).count(c) > 1})
    if dup_cols:
        raise DataError(f"{where} has duplicate column(s) {', '.join(dup_cols)}; keep one of each")
    cols = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in raw.columns]
    df = raw[cols].apply(lambda s: s.str.strip())
    df["line"] = df.index + 2  # header is line 1
    df = df[(df[cols] != "").any(axis=1)].reset_index(drop=True)  # blank lines are not rows
    if df.empty:
        raise DataError(f"{where} has a header but no rows; add one row per image")
    if "split" not in df:
        df["split"] = ""
    if "mask" not in df:
        df["mask"] = ""
    if "instance" not in df:
        df["instance"] = ""
    has_group = "group" in df
    df["duplicate_group"] = df["group"] if has_group else ""  # `group` in the frame is the label (label_codes)
    df["split_given"] = df["split"]           # as written, for messages
    df["split"] = df["split"].str.lower()     # "Train" is train

    errors: list[str] = []
    # Labels: an empty one cannot be skipped, it would be a wrong label.
    empty = []
    for col in REQUIRED_COLUMNS:
        for line in df.loc[df[col] == "", "line"]:
            empty.append((line, col))
    if empty:
        empty.sort()
        errors.append(format_problem(f"{len(empty)} empty value(s) in required columns",
                               [f"line {ln}: '{c}' is empty" for ln, c in empty],
                               "fill in path, generator and subclass on every row"))
    bad_split = df[~df["split"].isin(("",) + SPLIT_VALUES)]
    if len(bad_split):
        errors.append(format_problem(f"{len(bad_split)} row(s) with an unknown split value",
                               [f"line {r.line}: split {r.split_given!r}" for r in bad_split.itertuples()],
                               f"use one of {', '.join(SPLIT_VALUES)}, or leave it empty to let attrlib decide"))

    root_real = os.path.realpath(root)
    real_dirs: dict[str, str] = {}
    paths, masks, escapes, file_problems = [], [], [], []
    for r in df.itertuples():
        if r.path == "":
            paths.append("")
        else:
            absolute, problem = _resolve_inside(root_real, root, r.path, real_dirs)
            paths.append(absolute)
            if problem:
                escapes.append(f"line {r.line}: path {r.path!r} {problem}")
            elif not os.path.exists(absolute):
                file_problems.append((absolute, r.line, f"path {r.path!r} does not exist (looked for {absolute})"))
            elif not os.path.isfile(absolute):
                file_problems.append((absolute, r.line, f"path {r.path!r} is not a file"))
            elif not is_image_path(absolute):
                file_problems.append((absolute, r.line, f"path {r.path!r} does not have an image extension "
                                      f"({', '.join(IMAGE_EXTENSIONS)})"))
        if r.mask == "":
            masks.append("")
        else:
            absolute, problem = _resolve_inside(root_real, root, r.mask, real_dirs)
            masks.append(absolute)
            if problem:
                escapes.append(f"line {r.line}: mask {r.mask!r} {problem}")
            elif not os.path.isfile(absolute):
                file_problems.append((paths[-1], r.line, f"mask {r.mask!r} does not exist (looked for {absolute})"))
    df["path"], df["mask"] = paths, masks
    if escapes:
        errors.append(format_problem(f"{len(escapes)} path(s) outside the manifest's folder", escapes,
                               "paths must be relative to the manifest's folder and stay inside it (no '../', "
                               "no absolute or symlinked paths elsewhere); move the files in or the manifest up"))
    real = df["path"].map(lambda s: os.path.realpath(s) if s else "")
    dup = df[(real != "") & real.duplicated(keep=False)]
    if len(dup):
        groups = dup.groupby(real[dup.index], sort=False)["line"].apply(list)
        errors.append(format_problem(f"{len(groups)} image(s) listed more than once",
                               [f"lines {', '.join(map(str, lines))}: {p}" for p, lines in groups.items()],
                               "list every image once (a duplicate would count twice or leak between splits)"))
    if file_problems and on_bad == "raise":
        errors.append(format_problem(f"{len(file_problems)} row(s) name a file that cannot be used",
                               [f"line {ln}: {msg}" for _, ln, msg in file_problems],
                               "fix the path, restore the file, or load with on_bad='skip' to leave these rows out"))
    if errors:
        raise DataError(f"{where} has problems:\n" + "\n".join(errors))
    skipped = []
    if file_problems:
        bad_lines = {ln for _, ln, _ in file_problems}
        skipped = [(p, f"{where} line {ln}: {msg}") for p, ln, msg in file_problems]
        df = df[~df["line"].isin(bad_lines)].reset_index(drop=True)
        if df.empty:
            raise DataError(f"{where}: every row was skipped (no usable file); fix the paths")
    return Source(df[list(SOURCE_COLUMNS)], root, "manifest", where, skipped, has_group)


def list_images(source: str | os.PathLike, on_bad: str = "raise") -> Source:
    """The images to attribute, labels optional: every image file under a folder (any layout; folders starting
    with '_' or '.' are not data), or the rows of a manifest CSV whose `path` column is required and whose
    `generator` / `subclass`, when present, are kept as the images' known truth ("" otherwise)."""
    if on_bad not in ("raise", "skip"):
        raise DataError(f"on_bad is {on_bad!r}; valid choices: raise, skip")
    p = Path(source).expanduser()
    if not p.exists():
        raise DataError(f"images path {p} does not exist; pass a folder of images or a manifest CSV with a 'path' column")
    if p.is_file():
        if p.suffix.lower() != ".csv":
            raise DataError(f"images path {p} is a file but not a .csv manifest; pass a folder of images or a manifest")
        header = pd.read_csv(p, nrows=0, encoding="utf-8-sig").columns.str.strip().str.lower()
        if "path" not in header:
            raise DataError(f"manifest {p} has no 'path' column (columns found: {', '.join(header) or 'none'}); "
                            "name the image column 'path' (paths relative to the manifest's folder)")
        if all(c in header for c in REQUIRED_COLUMNS):
            return read_manifest(p, on_bad)
        raw = pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8-sig", skip_blank_lines=True)
        raw.columns = [str(c).strip().lower() for c in raw.columns]
        root_real, rows, problems, escapes = os.path.realpath(p.parent), [], [], []
        for i, r in enumerate(raw.to_dict("records")):
            line, value = i + 2, str(r["path"]).strip()
            if not value:
                continue
            absolute, problem = _resolve_inside(root_real, p.parent, value)
            if problem:
                escapes.append(f"line {line}: path {value!r} {problem}")
            elif not os.path.isfile(absolute) or not is_image_path(absolute):
                problems.append((absolute, line, f"path {value!r} is not an image file (looked for {absolute})"))
            else:
                rows.append((absolute, r.get("generator", ""), r.get("subclass", ""), "", "", "", "", line))
        if escapes:
            raise DataError(format_problem(f"manifest {p}: {len(escapes)} path(s) outside the manifest's folder",
                                           escapes, "paths must be relative to the manifest's folder and stay inside it"))
        if problems and on_bad == "raise":
            raise DataError(format_problem(f"manifest {p}: {len(problems)} row(s) name a file that cannot be used",
                                           [f"line {ln}: {m}" for _, ln, m in problems],
                                           "fix the path, restore the file, or use on_bad='skip' to leave these rows out"))
        frame = pd.DataFrame(rows, columns=list(SOURCE_COLUMNS))
        return Source(frame, p.parent, "manifest", f"manifest {p}",
                      [(a, f"manifest {p} line {ln}: {m}") for a, ln, m in problems])
    root = Path(os.path.abspath(p))
    rows = [(os.path.join(d, name), "", "", "", "", "", "", 0) for d, _, names in _walk(root)
            for name in sorted(names) if not name.startswith(".") and is_image_path(name)]
    if not rows:
        raise DataError(f"folder {root} contains no images (extensions {', '.join(IMAGE_EXTENSIONS)}; folders "
                        "starting with '_' or '.' are ignored)")
    frame = pd.DataFrame(rows, columns=list(SOURCE_COLUMNS))
    return Source(frame, root, "folder", f"folder {root}")
