"""Finished runs read once, as records, and a small query layer over them (DomainBed's `collect_results` and
`Q`). Tables, statistics, costs and model selection read records; only this module and `attrlib.runfolder`
open run folders for what they hold besides predictions.

    recs = collect({"baseline": [run, ...], "group_dro": [...]})   # arm -> run folders (what the sweep returns)
    recs.filter(arm="baseline").by_rotation()    # Rotation -> Records, in the runs' order
    recs.by_arm()                                # arm -> Records
    recs.folders()                               # the run folders, in order
    rec.rotation, rec.seed, rec.config, rec.metrics, rec.history, rec.upstream, rec.score()
    rec.test_predictions("val")                  # another rule's per-image test predictions, without retraining

An arm is a label and the configuration it stands for (a technique, or a technique with other options, e.g. the
baseline on another front end): the one word for it here and in the tables' `arm` column.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import pandas as pd

from . import runfolder, selection, techniques
from .config import Config
from .errors import CheckpointError
from .rotation import Rotation


@dataclass(frozen=True)
class Record:
    """One finished run: what its folder says, read once."""

    arm: str                 # the label the run was asked for under (a technique name unless an arm's)
    folder: Path
    config: Config
    metrics: dict = field(repr=False)
    history: tuple = field(repr=False)   # history.jsonl's epochs (scoring points carry val/valsub/test accuracy)

    @property
    def technique(self) -> str:
        return self.config.technique

    @property
    def rotation(self) -> Rotation:
        """The run's rotation, carrying the validation subclass the run left out (metrics.json: what its data
        resolved, "none" where it had none) back up to the tables."""
        if "val_subclass" not in self.metrics:
            return Rotation(self.config.heldout)
        return Rotation(self.config.heldout).resolved(self.metrics["val_subclass"])

    @property
    def seed(self) -> int:
        return int(self.config.seed)

    @property
    def val_subclass(self) -> str | None:
        """The validation subclass the run was selected on (its rotation's), None where the data had none."""
        val = self.rotation.val_subclass
        return None if val in (None, "none") else val

    @property
    def starts_from(self) -> str:
        """The technique whose finished run this one starts from (`Technique.starts_from`), "" for none."""
        return techniques.get(self.technique).starts_from or ""

    @property
    def upstream(self) -> Path | None:
        """The run folder this run started from (`Technique.starts_from`), derived as the sweep trains it."""
        config = runfolder.upstream_config(self.config)
        return runfolder.run_dir(config) if config is not None else None

    def score(self, rule: str | None = None) -> selection.Score:
        """The run's validation score under `rule` (default: its config's `selection`): `selection.score`."""
        return selection.score(self, rule or self.config.selection)

    def test_predictions(self, rule: str | None = None) -> pd.DataFrame:
        """The run's per-image test predictions under `rule` (default: its config's `selection`), read from the
        finished run, never trained again: at the point the run kept, predictions.csv's test rows (the run's own
        predictions, `technique.predict`); at another rule's point (`score(rule).step`), trajectory.csv's rows of
        that step (the attribution model there, as `score` reads the history's accuracies). Columns: predictions.csv's
        (`runfolder.PREDICTION_COLUMNS`, p_<generator>, and logp_ where the file has them)."""
        chosen = self.score(rule)
        if chosen.kept:
            return runfolder.load_predictions(self.folder, "test")
        trajectory = runfolder.read_trajectory(self.folder)
        if trajectory is None or chosen.step not in set(trajectory["step"]):
            raise CheckpointError(f"{self.folder / runfolder.TRAJECTORY} holds no test predictions at step {chosen.step}, "
                                  f"the point rule {chosen.rule!r} picks; the run predates the file: train it again "
                                  "(delete the folder) to read it under another rule")
        at = trajectory[trajectory["step"] == chosen.step].drop(columns="step").reset_index(drop=True)
        runfolder.check_prediction_frame(at, where=str(self.folder / runfolder.TRAJECTORY))
        return at


def read(folder: str | os.PathLike, arm: str | None = None) -> Record:
    """The record of one finished run folder (arm: its label; default the technique)."""
    folder = Path(folder)
    config = runfolder.read_config(folder)
    return Record(arm=arm or config.technique, folder=folder, config=config, metrics=runfolder.load_metrics(folder),
                  history=tuple(runfolder.read_history(folder)))


class Records(Sequence):
    """Records in order, with the few queries tables need (filter, group, by rotation, by arm)."""

    def __init__(self, records: Iterable[Record] = ()):
        self._records = list(records)

    def __getitem__(self, i):
        return Records(self._records[i]) if isinstance(i, slice) else self._records[i]

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self._records)

    def __repr__(self) -> str:
        return f"Records({len(self)} runs)"

    def filter(self, predicate: Callable[[Record], bool] | None = None, **equal: Any) -> "Records":
        """The records for which `predicate` holds and every field named in `equal` has that value."""
        return Records(r for r in self if (predicate is None or predicate(r))
                       and all(getattr(r, k) == v for k, v in equal.items()))

    def group(self, key: str | Callable[[Record], Any]) -> dict[Any, "Records"]:
        """key -> Records, keys in order of first appearance."""
        get = key if callable(key) else (lambda r: getattr(r, key))
        out: dict[Any, list] = {}
        for r in self:
            out.setdefault(get(r), []).append(r)
        return {k: Records(v) for k, v in out.items()}

    def by_rotation(self) -> dict[Rotation, "Records"]:
        return self.group("rotation")

    def by_arm(self) -> dict[str, "Records"]:
        return self.group("arm")

    def folders(self) -> list[Path]:
        return [r.folder for r in self]

    def folders_by_rotation(self) -> dict[str, list[Path]]:
        """rotation key ("a+b") -> its run folders: how tables and statistics name and pair rotations."""
        return {rotation.key: recs.folders() for rotation, recs in self.by_rotation().items()}

    def runs(self) -> dict[str, list[Path]]:
        """arm -> run folders: the mapping the sweep returns and the tables take."""
        return {arm: recs.folders() for arm, recs in self.by_arm().items()}


def collect(runs: "Mapping[str, Sequence[str | os.PathLike]] | Records | Sequence[str | os.PathLike]") -> Records:
    """Every run folder read once: arm -> folders (the sweep's mapping), plain folders (arm: the technique), or
    Records already collected (returned as they are)."""
    if isinstance(runs, Records):
        return runs
    if isinstance(runs, Mapping):
        return Records(read(d, arm) for arm, dirs in runs.items() for d in dirs)
    return Records(read(d) for d in runs)
