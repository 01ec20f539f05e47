"""Attribute new images with a trained run: which known generator made each one, or none of them?

    table = attrlib.predict("runs/baseline/0123abcd4567", "suspicious/", out="predictions.csv")

`predict` rebuilds the run's kept model (config.json + checkpoint.pt, weights_only), makes it open-set
(`openset.fit_open_set`: the feature density of its training images, each score's threshold on its validation
images at the false-rejection rate `frr`), reads the images in chunks (a tqdm bar on a terminal; bad files follow
`on_bad` with the data layer's messages) and scores each one as evaluation does (the run's crop or resize and
patch grid, patch log-probabilities averaged). The CSV it writes has PREDICT_COLUMNS, in this order:

    path                 the image
    generator            its true generator, when a manifest gives one (else the column is absent)
    pred                 the most probable known generator
    p_<generator>        the probability of every known generator (class index order)
    llr_<generator>      the per-generator log-likelihood ratio of notebook 10 (`llr.LLR_DEFINITION`)
    unknown_score        the chosen open-set score (`score`: higher = further from every known generator)
    unknown              unknown_score above the threshold: "none of these generators"
    score_<name>         every open-set score (`openset.SCORES`)
    threshold, score, frr, calibration   how `unknown` was decided
    run_id, run, technique, commit       provenance (commit: the code that trained the run, metrics.json's
                                         `commit`; "" for a run trained outside git or before it was recorded)

Beside the CSV, `<name>.provenance.json` (`provenance_path`) records the same run and commit, the commit of the
code that predicted (`provenance.code_commit`), the images, the threshold and, for `attrlib predict --study`,
which study chose the run and how (`origin`).
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import records
from ..data import list_images
from ..errors import DataError
from ..rotation import Rotation
from ..io import atomic_open, atomic_write_json
from ..provenance import code_commit, now
from .openset import CALIBRATION_SPLIT, DEFAULT_FRR, DEFAULT_SCORE, SCORE_PREFIX, SCORES, OpenSetModel, fit_open_set
from .selection import select_arm, selected_runs

CHUNK = 512  # images decoded and scored at once: memory stays bounded on a folder of any size
PROVENANCE = ("threshold", "score", "frr", "calibration", "run_id", "run", "technique", "commit")


class Unlabelled:
    """What `ImageDataset` reads from a StudyData, for images with no labels (every code -1)."""

    def __init__(self, on_bad: str = "raise") -> None:
        self.on_bad = on_bad
        self.skipped: list = []

    def labels(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return {k: np.full(len(frame), -1, dtype=np.int64) for k in ("generator", "subclass", "group")}


def predict_columns(generators: Sequence[str], labelled: bool = False) -> list[str]:
    """The columns of `predict`'s table, in order (module docstring)."""
    return (["path"] + (["generator"] if labelled else []) + ["pred"] + [f"p_{g}" for g in generators]
            + [f"llr_{g}" for g in generators] + ["unknown_score", "unknown"]
            + [f"{SCORE_PREFIX}{s}" for s in SCORES] + list(PROVENANCE))


def predict(run: str | os.PathLike | OpenSetModel, images: str | os.PathLike, out: str | os.PathLike | None = None,
            frr: float = DEFAULT_FRR, score: str = DEFAULT_SCORE, on_bad: str = "raise",
            calibration: str = CALIBRATION_SPLIT, device: str = "cpu", batch_size: int = 64,
            progress: bool | None = None, data_root: str | os.PathLike | None = None,
            origin: Mapping[str, object] | None = None) -> pd.DataFrame:
    """Attribute every image of a folder (any layout) or manifest (a `path` column; `generator`, when given, is
    kept as the truth) with a finished run, and flag those of no known generator (module docstring).

    run: a run folder, or an `OpenSetModel` (`fit_open_set`) to reuse across calls. frr: the share of known
    validation images flagged unknown (the threshold). score: msp | energy | mahalanobis | relative_mahalanobis. on_bad: "raise" (stop,
    naming the bad files) or "skip" (leave them out; listed in `table.attrs["skipped"]`). progress: a bar (None:
    only on a terminal). data_root: where the run's training data lies now, if it moved. out: the CSV to write,
    with its provenance beside it (`provenance_path`). origin: how the run was chosen, for that record (the study
    form: `attrlib.study.selected`).
    """
    if score not in SCORES:
        raise DataError(f"unknown open-set score {score!r}; valid: {', '.join(SCORES)}")
    source = list_images(images, on_bad)
    model = run if isinstance(run, OpenSetModel) else fit_open_set(run, frr=frr, calibration=calibration,
                                                                  device=device, batch_size=batch_size,
                                                                  data_root=data_root)
    frame, skipped = source.frame, list(source.skipped)
    labelled = bool((frame["generator"] != "").any())
    show = sys.stderr.isatty() if progress is None else progress
    parts = []
    with tqdm(total=len(frame), desc="attributing", unit="img", disable=not show) as bar:
        for start in range(0, len(frame), CHUNK):
            rows = frame.iloc[start:start + CHUNK]
            stub = Unlabelled(on_bad)
            dataset = model.dataset(rows, data=stub, on_bad=on_bad)  # skipped files are listed once, below
            skipped += stub.skipped
            bar.update(len(rows) - len(dataset))
            parts.append(model.score(model.outputs(dataset, bar=bar)))
    if not sum(len(p) for p in parts):
        raise DataError(f"no image of {source.where} could be read ({len(skipped)} skipped); nothing to attribute")
    table = pd.concat(parts, ignore_index=True)
    if labelled:
        table["generator"] = table["path"].map(dict(zip(frame["path"], frame["generator"])))
    flagged = model.flag(table, score)
    metrics = records.read(model.run.dir).metrics
    table = table.assign(unknown_score=table[f"{SCORE_PREFIX}{score}"], unknown=flagged,
                         threshold=model.thresholds[score], score=score, frr=model.frr,
                         calibration=model.calibration, run_id=model.run.dir.name, run=str(model.run.dir),
                         technique=model.run.name, commit=str(metrics.get("commit", "")))
    table = table[predict_columns(model.generators, labelled)]
    table.attrs.update(skipped=skipped, notes=list(model.notes), source=source.where, provenance=dict(
        run=str(model.run.dir), run_id=model.run.dir.name, technique=model.run.name, commit=table["commit"].iat[0],
        predict_commit=code_commit(), images=str(source.where), n_images=len(table), skipped=len(skipped),
        score=score, threshold=float(model.thresholds[score]), frr=model.frr, calibration=model.calibration,
        written=now(), **(origin or {})))
    if skipped:
        warnings.warn(f"predict: skipped {len(skipped)} unusable file(s) of {source.where}: "
                      + "; ".join(f"{p}: {r}" for p, r in skipped[:3]) + ("; ..." if len(skipped) > 3 else ""),
                      stacklevel=2)
    if out is not None:
        write_predict_table(out, table)
    return table


def provenance_path(path: str | os.PathLike) -> Path:
    """Where the provenance of a predict CSV lies: beside it, `<name>.provenance.json`."""
    return Path(path).with_suffix(".provenance.json")


def write_predict_table(path: str | os.PathLike, table: pd.DataFrame) -> Path:
    """The table as a CSV, and its `attrs["provenance"]` beside it (`provenance_path`), each written atomically."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        table.to_csv(fh, index=False)
    if "provenance" in table.attrs:
        atomic_write_json(provenance_path(path), table.attrs["provenance"])
    return Path(path)


def selected_run(runs: Mapping[str, Sequence[str | os.PathLike]], rotation: str | None = None, seed: int = 0) -> Path:
    """The run folder `predict` uses for a finished study's arms (label -> run folders): the arm rule (b) selects
    (`selection.select_arm`) in `rotation` (a Rotation or its key "a+b"; default the first), seed `seed`."""
    runs = records.collect(runs)
    choice = select_arm(runs)
    if rotation is not None:
        choice = choice[choice["heldout"] == Rotation(rotation).key]
        if choice.empty:
            raise DataError(f"no rotation {rotation!r} among the study's runs; rotations: {sorted(select_arm(runs)['heldout'])}")
    dirs = selected_runs(runs, choice.head(1))
    from_seed = [r.folder for r in runs.filter(lambda r: r.folder in dirs) if r.metrics.get("seed", 0) == seed] or dirs
    return Path(from_seed[0])
