"""The model a finished study selected, and `attrlib predict --study`: attribute new images with it.

    table = attrlib.predict(images="suspicious/", study=".", out="predictions.csv")

A study records its choice in its results folder: `provenance.json` (`attrlib.provenance`: which study ran which
notebook, with what parameters, and whether it finished) and `11_selection.csv` (notebook 11: the arm rule (b)
chose in each rotation, `evaluation.select_arm`). Where notebook 11 has not run but notebook 10 has, rule (b) is
applied here to notebook 10's techniques (those that use no target data), as notebook 11 applies it to its arms.
The chosen arm's run folders are found, not trained (`sweep.finished`), from the study's recorded parameters:
the rotation (default: the study's first, the one notebook 11 inspects) and the seed (default: the first) name
one run, which `evaluation.inference.predict` applies.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .. import sweep, techniques
from ..errors import ConfigError
from ..evaluation import select_arm
from ..evaluation.inference import predict as predict_run
from ..provenance import PROVENANCE_FILE, producer, read_provenance
from . import closing
from .session import session

SELECTION_TABLE = "11_selection"  # notebook 11's `reporting.save_table` name: results/11_selection.csv


@dataclass(frozen=True)
class StudyModel:
    """The run a finished study selected: its folder, the arm, rotation and seed it stands for, and where the
    choice was read (`source`: a results file, or rule (b) applied here to notebook 10's runs)."""

    run: Path
    arm: str
    rotation: str
    seed: int
    study: str
    source: str

    def provenance(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def results_folder(study: str | os.PathLike) -> Path:
    """The results folder of a study: `study` itself when it holds provenance.json, else its `results/`."""
    folder = Path(study)
    for candidate in (folder, folder / "results"):
        if (candidate / PROVENANCE_FILE).is_file():
            return candidate
    raise ConfigError(f"{folder / 'results' / PROVENANCE_FILE} does not exist (nor {folder / PROVENANCE_FILE}): "
                      f"{str(folder)!r} is not a study's folder; pass the project folder `attrlib study` ran in (or "
                      "its results/ folder), or run the study first")


def _finished(record: Mapping[str, Any] | None, notebook: str, where: Path) -> Mapping[str, Any] | None:
    if record is not None and record.get("status", "finished") != "finished":
        raise ConfigError(f"{where}: the study that runs notebook {notebook} has not finished (status "
                          f"{record.get('status')!r}, started {record.get('started')}), so its selection is not final; wait for it to finish, or "
                          "re-run it (attrlib study), before predicting with the model it selects")
    return record


def _session(record: Mapping[str, Any]):
    p = record.get("parameters", {})
    return session(profile=record["profile"], data=p.get("data", record.get("data", "")), heldout=p.get("heldout", ""),
                   seeds=record.get("seeds", ()), runs=p.get("runs", "runs"), device=p.get("device", "auto"),
                   on_bad=p.get("on_bad", "raise"), progress=False)


def study_model(study: str | os.PathLike = ".", rotation: str | None = None, seed: int | None = None) -> StudyModel:
    """The run folder of the arm a finished study selected (module docstring). rotation: its held-out
    subclass(es) ("a" or "a+b"; default the study's first); seed: one of the study's seeds (default the first)."""
    results = results_folder(study)
    prov_file = results / PROVENANCE_FILE
    prov = read_provenance(results)
    record = _finished(producer(prov, "11"), "11", prov_file)
    selection = results / f"{SELECTION_TABLE}.csv"
    if record is not None:
        if not selection.is_file():
            raise ConfigError(f"{selection} does not exist, though {prov_file} says notebook 11 ran; re-run notebook "
                              "11 (attrlib study --only 11), which writes the arm rule (b) selects in each rotation")
        choice = pd.read_csv(selection, index_col=0)
        if not {"heldout", "chosen"} <= set(choice.columns):
            raise ConfigError(f"{selection} has no 'heldout' and 'chosen' columns (notebook 11's selection table); "
                              "re-run notebook 11")
        jobs = closing.arm_configs(closing.ARMS, closing.SEEDS_TECHNIQUES)
        source = str(selection)
    else:
        record = _finished(producer(prov, "10"), "10", prov_file)
        if record is None:
            raise ConfigError(f"{prov_file}: the study has not finished notebook 11 (whose choice is {selection}) "
                              "nor notebook 10 (whose techniques rule (b) can choose among); run them first "
                              "(attrlib study), or predict with a run folder (attrlib predict --run)")
        fair = [n for n in techniques.available() if not techniques.get(n).uses_target_data]
        jobs, choice = {n: {"technique": n} for n in fair}, None
        source = f"rule (b) over notebook 10's techniques ({prov_file}: no {selection.name})"
    s = _session(record)
    if choice is None:
        choice = select_arm(sweep.finished(jobs, s.profile, s.seeds, **s.common), list(jobs))
    choice = choice.dropna(subset=["chosen"])
    rotations = [str(r) for r in choice["heldout"]]
    if not rotations:
        raise ConfigError(f"{source}: no rotation has a chosen arm (no validation score); nothing to predict with")
    rotation = rotations[0] if rotation is None else rotation
    if rotation not in rotations:
        raise ConfigError(f"rotation {rotation!r} is not among the study's ({source}): {', '.join(rotations)}")
    arm = str(choice.loc[choice["heldout"].astype(str) == rotation, "chosen"].iat[0])
    if arm not in jobs:
        raise ConfigError(f"{source}: the arm {arm!r} chosen in rotation {rotation} is not among the known arms "
                          f"({', '.join(jobs)}); the study ran another version of attrlib: re-run it")
    seed = s.seeds[0] if seed is None else int(seed)
    if seed not in s.seeds:
        raise ConfigError(f"seed {seed} is not among the study's seeds {list(s.seeds)}")
    dirs = sweep.finished({arm: jobs[arm]}, s.profile, (seed,), rotations=[tuple(rotation.split("+"))],
                          **{k: v for k, v in s.common.items() if k != "rotations"})[arm]
    return StudyModel(run=dirs[0], arm=arm, rotation=rotation, seed=seed, study=str(results), source=source)


def predict(run: str | os.PathLike | None = None, images: str | os.PathLike | None = None,
            out: str | os.PathLike | None = None, *, study: str | os.PathLike | None = None,
            rotation: str | None = None, seed: int | None = None, **options: Any) -> pd.DataFrame:
    """`attrlib.predict`: attribute the images with a run folder (`run`), or with the model a finished study
    selected (`study`: its folder; `rotation`, `seed`: `study_model`). options: `evaluation.inference.predict`'s
    (frr, score, on_bad, calibration, device, batch_size, progress, data_root)."""
    if images is None:
        raise ConfigError("predict needs images: a folder of images or a manifest CSV with a 'path' column")
    if (run is None) == (study is None):
        raise ConfigError("predict takes either a run folder (run=...) or a finished study (study=...), not "
                          + ("both" if run is not None else "neither"))
    if study is None:
        return predict_run(run, images, out, **options)
    chosen = study_model(study, rotation, seed)
    return predict_run(chosen.run, images, out, origin={"study": chosen.provenance()}, **options)
