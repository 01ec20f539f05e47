"""A finished run folder back as objects: its config, its trained technique (on the CPU by default), its
data, and the predictions of the split it is judged on.

    run = load_run("runs/baseline/3f2a9c01d4e5")
    run.technique.predict(x)        # the technique's full prediction (e.g. with its test-time attack)
    run.model.features(x)           # the attribution model (for probes and CAMs)
    heldout_predictions(run.dir)    # rows of predictions.csv on the split metrics.json reports as held out
    for name, run, frame in iter_runs({"baseline": dirs}, max_images=64): ...   # every run of every technique

Only the public techniques API is used: `techniques.build_technique(config, data)` and the checkpoint's
`technique` state dict (see `attrlib.engine.save_checkpoint`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pandas as pd
import torch

from ..config import Config
from ..errors import CheckpointError, DataError

PREDICTION_COLUMNS = ("path", "split", "generator", "subclass", "pred")


@dataclass
class LoadedRun:
    dir: Path
    config: Config
    technique: Any      # an attrlib.techniques.Technique, in eval mode
    data: Any           # the StudyData it was trained on (or the one passed in)

    @property
    def model(self):
        """The attribution model (stem, backbone, generator head, and a subclass head when dual-head)."""
        return self.technique.model

    @property
    def generators(self) -> list[str]:
        return list(self.technique.generators)

    @property
    def name(self) -> str:
        return self.config.technique

    @property
    def seed(self) -> int:
        return int(self.config.seed)


def read_config(run_dir: str | os.PathLike) -> Config:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; is {str(run_dir)!r} a run folder made by attrlib.engine.train?")
    return Config.from_dict(json.loads(path.read_text()))


def load_run(run_dir: str | os.PathLike, data: Any = None, data_root: str | os.PathLike | None = None,
             device: str | torch.device = "cpu", cache: dict | None = None) -> LoadedRun:
    """Rebuild the trained technique of a finished run folder.

    data: a StudyData to reuse (its generators must be the run's); data_root: where the run's data lies now,
    when the path in its config.json no longer resolves (e.g. runs copied from another machine). Neither
    given: the config's own `data` path. cache: a dict shared by several calls, so runs trained on the same
    data (same path, held-out subclasses and val fraction) read the folder once.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if not (run_dir / "done").exists():
        raise CheckpointError(f"run {run_dir} has no 'done' marker: it did not finish; train it with "
                              "attrlib.engine.train(config) first")
    if data is None:
        data = _study_data(config if data_root is None else config.replace(data=str(data_root)), cache)
    _check_generators(run_dir, data)

    from .. import techniques

    technique = techniques.build_technique(config, data)
    path = run_dir / "checkpoint.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["technique"]
        technique.load_state_dict(state)
    except Exception as err:
        raise CheckpointError(f"cannot load the trained technique from {path}: {err}; delete the run folder "
                              "so that attrlib.engine.train trains it again") from None
    technique.to(device).eval()
    return LoadedRun(dir=run_dir, config=config, technique=technique, data=data)


def _study_data(config: Config, cache: dict | None) -> Any:
    from ..engine import load_data

    key = (os.path.abspath(config.data), tuple(config.heldout), config.val_fraction)
    if cache is None:
        return load_data(config)
    if key not in cache:
        cache[key] = load_data(config)
    return cache[key]


def _check_generators(run_dir: Path, data: Any) -> None:
    pred = run_dir / "predictions.csv"
    if not pred.is_file():
        return
    columns = pd.read_csv(pred, nrows=0).columns
    run_generators = [c[2:] for c in columns if c.startswith("p_")]
    if run_generators and run_generators != list(data.generators):
        raise DataError(f"{pred} was made for generators {run_generators} but the data has {list(data.generators)}; "
                        "pass the StudyData (or data_root) the run was trained on")


def iter_runs(runs: Mapping[str, Sequence[str | os.PathLike]], data: Any = None, split: str | None = None,
              max_images: int | None = None) -> Iterator[tuple[str, LoadedRun, pd.DataFrame]]:
    """(technique name, loaded run, frame) for every run folder of every technique (runs: name -> run folders).

    frame: the rows of `split` (default: each run's own held-out split, test or ft_test); with `max_images`,
    a random sample of that many rows (fixed seed, kept in order: every run of the same data gets the same
    images, and every generator its share). Runs trained on the same data read it once.
    """
    cache: dict = {}
    for name, dirs in runs.items():
        for d in dirs:
            run = load_run(d, data=data, cache=cache)
            frame = run.data.split(split or heldout_split(d))
            if max_images is not None and len(frame) > max_images:
                frame = frame.sample(max_images, random_state=0).sort_index()
            yield name, run, frame


def load_metrics(run_dir: str | os.PathLike) -> dict:
    """metrics.json of a finished run folder."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; the run did not finish (train it with attrlib.engine.train)")
    return json.loads(path.read_text())


def load_predictions(run_dir: str | os.PathLike, split: str | None = None) -> pd.DataFrame:
    """predictions.csv of a run (all splits, or one); raises DataError naming a missing column."""
    path = Path(run_dir) / "predictions.csv"
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; the run did not finish (train it with attrlib.engine.train)")
    frame = pd.read_csv(path)
    check_prediction_frame(frame, where=str(path))
    if split is not None:
        if split not in set(frame["split"]):
            raise DataError(f"{path} has no rows of split {split!r}; it has {sorted(set(frame['split']))}")
        frame = frame[frame["split"] == split].reset_index(drop=True)
    return frame


def heldout_split(run_dir: str | os.PathLike) -> str:
    """The split metrics.json reports as `heldout` (test, or ft_test for fine-tuning)."""
    path = Path(run_dir) / "metrics.json"
    try:
        return load_metrics(run_dir)["heldout"]["split"]
    except (OSError, KeyError, ValueError) as err:
        raise CheckpointError(f"cannot read heldout.split from {path}: {err}; train the run again") from None


def heldout_predictions(run_dir: str | os.PathLike) -> pd.DataFrame:
    return load_predictions(run_dir, heldout_split(run_dir))


def generators_of(frame: pd.DataFrame) -> list[str]:
    """The generators of a predictions frame, in column (= class index) order."""
    return [c[2:] for c in frame.columns if c.startswith("p_")]


def check_prediction_frame(frame: pd.DataFrame, generators=None, where: str = "predictions frame") -> None:
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if generators is not None:
        missing += [f"p_{g}" for g in generators if f"p_{g}" not in frame.columns]
    if missing:
        raise DataError(f"{where} lacks column(s) {missing}; pass the rows of a run's predictions.csv "
                        "(attrlib.engine.train writes it)")
