"""The run folder: its format, written and read here and nowhere else.

    runs/<technique>/<run id>/
        config.json       the Config (`Config.to_dict`)
        history.jsonl     one JSON object per finished epoch (loss, val/valsub/test accuracy at scoring points, timing, ...)
        train.log         the same, one readable line per epoch (`log_line`): the training log, kept here rather
                          than in a notebook's output (a terminal shows it as well: `attrlib.progress`)
        checkpoint.pt     technique, optimiser and random states after the last finished epoch, and under
                          `selected` the technique state the run's selection rule kept (what the run stands for)
        predictions.csv   PREDICTION_COLUMNS, then p_<generator> per generator (class index order): the selected state's;
                          then logp_<generator>: the log-probabilities at full precision (runs before them lack
                          these columns; `log_probabilities` then recomputes them from p_, and says so)
        trajectory.csv    the same columns plus `step`: the attribution model's test predictions at every scoring point
        metrics.json      written by the sweep from predictions.csv with `attrlib.evaluation.metrics.run_metrics`
        done              the run finished; a folder without it is resumed, never read as a result

The run id is a hash of the Config fields that change what a run computes, with the data path replaced by
the data's fingerprint (`attrlib.data.fingerprint`): a run is reused on the same data wherever it lies and
never on changed data at the same path. Every file is written atomically (`attrlib.io`).

Reading side: `load_run` rebuilds a finished run's trained technique (on the CPU by default); `iter_runs`
walks the runs of several techniques; `heldout_predictions` gives the rows a run is judged on.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from . import selection, techniques
from .config import Config
from .data import StudyData, data_fingerprint, load_config_data, resolve_rotation
from .errors import CheckpointError, ConfigError, DataError
from .io import atomic_open, atomic_torch_save, atomic_write_json, atomic_write_text
from .models.weights import safe_load
from .rotation import Rotation

CONFIG, HISTORY, CHECKPOINT, PREDICTIONS, METRICS, DONE = (
    "config.json", "history.jsonl", "checkpoint.pt", "predictions.csv", "metrics.json", "done")
# the held-out predictions of the attribution model at every scoring point of training (column `step`): the
# file model-selection rules are applied to after the fact (rule (c), the test-set oracle, needs them all)
TRAJECTORY = "trajectory.csv"
LOG = "train.log"  # history.jsonl as readable lines, rewritten with it
FILES = (CONFIG, HISTORY, LOG, CHECKPOINT, PREDICTIONS, TRAJECTORY, METRICS, DONE)
PREDICTION_COLUMNS = ("path", "split", "generator", "subclass", "pred")
PROBABILITY_PREFIX = "p_"
LOG_PROBABILITY_PREFIX = "logp_"  # log-probabilities: the LLR needs them unclipped (p_ underflows to 0 in float32)


# --- identity and paths ---
# Bump when the engine computes something else from the same Config (the protocol of model selection, the
# files a run holds): a finished run of an older engine is then trained again rather than reused.
RESULTS_VERSION = 2


def run_id(config: Config) -> str:
    """Hash of `config.identity()` with the data path replaced by the data's fingerprint, the technique's
    hyper-parameters as it resolves them (its defaults with the config's overrides: a changed default is a
    different run) and RESULTS_VERSION."""
    try:
        hparams = {**techniques.get(config.technique).defaults, **config.technique_params}
    except ConfigError:  # an unknown technique: the sweep names the valid ones before any run folder is made
        hparams = dict(config.technique_params)
    # `selection` left the identity (a rule is applied to a finished run's recorded points, `attrlib.selection`);
    # its slot keeps the value every run was hashed with before, so existing run ids stay the same and are reused
    identity = {**config.identity(), "selection": selection.KEPT, "data": data_fingerprint(config.data),
                "hparams": hparams,
                "results_version": RESULTS_VERSION,
                # "auto" and the subclass it picks: one run
                "val_subclass": resolved_rotation(config).val_subclass or "auto"}
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def resolved_rotation(config: Config) -> Rotation:
    """The config's rotation carrying the validation subclass its run leaves out: carried already when the config
    names one (a rotation `sweep.plan` resolved gives it to the Config), else "auto" resolved on the config's data
    (`data.resolve_rotation`); unresolved (val_subclass None) when the data cannot be read here (the run then fails
    on its data with a clear message, before any work)."""
    if config.heldout.val_subclass is not None:
        return config.heldout
    try:
        return resolve_rotation(config.data, config.heldout, config.val_subclass, config.unknown_generators)
    except DataError:
        return config.heldout


def run_dir(config: Config) -> Path:
    return Path(config.runs) / config.technique / run_id(config)


def upstream_config(config: Config) -> Config | None:
    """The Config of the run `config`'s run starts from (its technique's `upstream`: fine_tuning and dfr from the
    baseline of the same config, jtt from the baseline cut to its identification steps), None when it starts from
    nothing. The sweep trains it, records and the cost table find it."""
    return techniques.get(config.technique).upstream(config)


def lock_path(run: Path) -> Path:
    """The lock file a trainer holds while it trains `run` (beside the folder, so it outlives a deleted one)."""
    return run.parent / f".{run.name}.lock"


def is_done(run: str | os.PathLike) -> bool:
    return (Path(run) / DONE).exists()


# --- writing ---
def write_config(run: Path, config: Config) -> None:
    atomic_write_json(run / CONFIG, config.to_dict())


def write_history(run: Path, history: list[dict[str, Any]]) -> None:
    # the whole history is rewritten atomically (not appended): a kill leaves the old file or the new one
    atomic_write_text(run / HISTORY, "".join(json.dumps(h, sort_keys=True) + "\n" for h in history))
    atomic_write_text(run / LOG, "".join(log_line(h) + "\n" for h in history))


def log_line(entry: dict[str, Any]) -> str:
    """One epoch of history.jsonl as a line of train.log: "epoch 3 (step 48): loss 1.2345, val acc 0.812,
    valsub acc 0.700, test acc 0.530, 410 img/s" (the accuracies of a scoring point only)."""
    parts = [f"loss {entry['loss']:.4f}"] if "loss" in entry else []
    parts += [f"{split} acc {entry[f'{split}_accuracy']:.3f}" for split in ("val", "valsub", "test")
              if f"{split}_accuracy" in entry]
    if "images_per_second" in entry:
        parts.append(f"{entry['images_per_second']:.0f} img/s")
    return f"epoch {entry['epoch'] + 1} (step {entry.get('step', '?')}): " + ", ".join(parts)


def write_checkpoint(run: Path, state: dict[str, Any]) -> None:
    atomic_torch_save(state, run / CHECKPOINT)


def prediction_frame(frame: pd.DataFrame, split: str, generators: Sequence[str], probs=None, *,
                     log_probs=None) -> pd.DataFrame:
    """The predictions.csv rows of one split: the data rows `frame` and their (N, n_generators) probabilities
    or, better, log-probabilities (`attrlib.techniques.predict_log_probs`): then p_ is their exp and logp_
    columns keep them at full precision, so the log-likelihood ratios do not saturate where p rounds to 0 or 1."""
    if log_probs is not None:
        log_probs = np.asarray(log_probs, dtype=np.float64)
        probs = np.exp(log_probs).astype(np.float32)
    elif probs is None:
        raise ValueError("prediction_frame needs probs or log_probs")
    pred = np.asarray(probs).argmax(1) if log_probs is None else log_probs.argmax(1)
    part = pd.DataFrame({"path": frame["path"].to_numpy(), "split": split,
                         "generator": frame["generator"].to_numpy(), "subclass": frame["subclass"].to_numpy(),
                         "pred": [generators[i] for i in pred]})
    for i, g in enumerate(generators):
        part[f"{PROBABILITY_PREFIX}{g}"] = probs[:, i]
    if log_probs is not None:
        for i, g in enumerate(generators):
            part[f"{LOG_PROBABILITY_PREFIX}{g}"] = log_probs[:, i]
    return part


def write_predictions(run: Path, predictions: pd.DataFrame) -> None:
    with atomic_open(run / PREDICTIONS, "w", encoding="utf-8", newline="") as fh:
        predictions.to_csv(fh, index=False)


def write_trajectory(run: Path, frames: Sequence[pd.DataFrame]) -> None:
    """trajectory.csv: prediction frames (`prediction_frame`) with a `step` column, one per scoring point."""
    with atomic_open(run / TRAJECTORY, "w", encoding="utf-8", newline="") as fh:
        pd.concat(list(frames), ignore_index=True).to_csv(fh, index=False)


def write_metrics(run: Path, metrics: dict[str, Any]) -> None:
    atomic_write_json(run / METRICS, metrics)


def mark_done(run: Path) -> None:
    atomic_write_text(run / DONE, time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")


# --- reading ---
def read_config(run: str | os.PathLike) -> Config:
    path = Path(run) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; is {str(run)!r} a run folder made by attrlib.sweep.train?")
    return Config.from_dict(json.loads(path.read_text()))


def read_history(run: str | os.PathLike, upto: int | None = None) -> list[dict[str, Any]]:
    """The epochs of history.jsonl (those before `upto`, when given); torn or foreign lines are left out."""
    path = Path(run) / HISTORY
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:  # the file is rewritten atomically, but a torn line (a copy, an old version) must not stop a resume
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int) and (upto is None or row["epoch"] < upto):
            rows.append(row)
    return rows


def read_checkpoint(run: str | os.PathLike, what: str = "checkpoint",
                    advice: str = "delete the file to train this run from the start") -> dict[str, Any]:
    """checkpoint.pt, loaded with weights_only=True (a pickle payload is refused before anything runs)."""
    return safe_load(Path(run) / CHECKPOINT, what, advice)


def read_trajectory(run: str | os.PathLike) -> pd.DataFrame | None:
    """trajectory.csv of a run (None for a run folder written before it existed)."""
    path = Path(run) / TRAJECTORY
    return pd.read_csv(path, keep_default_na=False) if path.is_file() else None


def trained_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The technique state a finished run stands for: the checkpoint its selection rule kept (`selected`),
    else the last epoch's (runs written before selection existed, or rule "last")."""
    selected = checkpoint.get("selected") if isinstance(checkpoint, dict) else None
    return selected["technique"] if selected else checkpoint["technique"]


def load_metrics(run: str | os.PathLike) -> dict:
    """metrics.json of a finished run folder."""
    path = Path(run) / METRICS
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; the run did not finish (train it with attrlib.sweep.train)")
    return json.loads(path.read_text())


def generators_of(frame: pd.DataFrame) -> list[str]:
    """The generators of a predictions frame, in column (= class index) order."""
    n = len(PROBABILITY_PREFIX)
    return [c[n:] for c in frame.columns if c.startswith(PROBABILITY_PREFIX)]


def check_prediction_frame(frame: pd.DataFrame, generators=None, where: str = "predictions frame") -> None:
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if generators is not None:
        missing += [f"{PROBABILITY_PREFIX}{g}" for g in generators if f"{PROBABILITY_PREFIX}{g}" not in frame.columns]
    if missing:
        raise DataError(f"{where} lacks column(s) {missing}; pass the rows of a run's predictions.csv "
                        "(attrlib.sweep.train writes it)")


def log_probabilities(frame: pd.DataFrame, generators: Sequence[str]) -> tuple[np.ndarray, str]:
    """(N, n_generators) log-probabilities of a predictions frame and a note: "" when its logp_ columns hold
    them, else how they were recomputed from the p_ columns of a run folder written before logp_ existed
    (float32 probabilities: a probability that underflowed to 0 is floored, so the log stops near -103)."""
    columns = [f"{LOG_PROBABILITY_PREFIX}{g}" for g in generators]
    if all(c in frame.columns for c in columns) and not frame[columns].isna().to_numpy().any():
        return frame[columns].to_numpy(np.float64), ""
    check_prediction_frame(frame, generators)
    probs = frame[[f"{PROBABILITY_PREFIX}{g}" for g in generators]].to_numpy(np.float64)
    floor = float(np.finfo(np.float32).smallest_subnormal)
    return np.log(np.clip(probs, floor, None)), (
        "no logp_ columns (a run folder from before they existed): log-probabilities recomputed from the stored "
        f"float32 probabilities, floored at {floor:.0e} (|LLR| is cut near {-np.log(floor):.0f}); train the run "
        "again for exact values")


def load_predictions(run: str | os.PathLike, split: str | None = None) -> pd.DataFrame:
    """predictions.csv of a run: all splits, or one ("heldout": the split metrics.json reports as held out);
    raises DataError naming a missing column."""
    if split == "heldout":
        split = heldout_split(run)
    path = Path(run) / PREDICTIONS
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; the run did not finish (train it with attrlib.sweep.train)")
    frame = pd.read_csv(path)  # pandas 3 parses floats exactly (logp_ at full precision: tested)
    check_prediction_frame(frame, where=str(path))
    if split is not None:
        if split not in set(frame["split"]):
            raise DataError(f"{path} has no rows of split {split!r}; it has {sorted(set(frame['split']))}")
        frame = frame[frame["split"] == split].reset_index(drop=True)
    return frame


def heldout_split(run: str | os.PathLike) -> str:
    """The split metrics.json reports as `heldout` (test, or ft_test for fine-tuning)."""
    try:
        return load_metrics(run)["heldout"]["split"]
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"cannot read heldout.split from {Path(run) / METRICS}: {err}; train the run again") from None


def heldout_predictions(run: str | os.PathLike) -> pd.DataFrame:
    return load_predictions(run, "heldout")


def pooled_predictions(runs: Sequence[str | os.PathLike], split: str = "heldout") -> pd.DataFrame:
    """`load_predictions(run, split)` of several runs, one after the other (seeds pooled)."""
    if not len(runs):
        raise ValueError("pooled_predictions needs at least one run folder")
    return pd.concat([load_predictions(d, split) for d in runs], ignore_index=True)


def cross_fitted_predictions(folds: Sequence[str | os.PathLike], split: str = "test",
                             subsets: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """The `split` rows of a cross-fitted technique's fold runs, concatenated: each image once (scored by the
    fold that held it out); raises DataError if two folds scored the same image. subsets: split name -> paths
    of `split` (ft_test: the part of the held-out subclass fine_tuning is judged on), whose rows are repeated
    under that name, so the run is scored on every split the other arms are compared on."""
    frame = pooled_predictions(folds, split)
    twice = frame["path"][frame["path"].duplicated()]
    if len(twice):
        raise DataError(f"cross-fitted folds {[str(f) for f in folds]} scored {len(twice)} image(s) more than once "
                        f"(e.g. {twice.iat[0]!r}); every held-out image belongs to one fold: train the folds of one "
                        "config again")
    parts = [frame] + [frame[frame["path"].isin(set(paths))].assign(split=name)
                       for name, paths in (subsets or {}).items() if len(paths)]
    return pd.concat(parts, ignore_index=True)


def averaged_predictions(runs: Sequence[str | os.PathLike], generators: Sequence[str]) -> pd.DataFrame:
    """An ensemble's predictions.csv: the rows the finished `runs` all predicted (every split, each image once per
    split, in the first run's order), p_<generator> the mean of their probabilities, logp_ its log, pred its
    argmax (ties to the generator listed first). Raises DataError naming the run whose rows differ from the first's
    (runs of another rotation, seed or data) or which lacks a generator's column."""
    if not len(runs):
        raise ValueError("averaged_predictions needs at least one run folder")
    columns = [f"{PROBABILITY_PREFIX}{g}" for g in generators]
    frames = []
    for run in runs:
        frame = load_predictions(run)
        check_prediction_frame(frame, generators, where=str(Path(run) / PREDICTIONS))
        frames.append(frame.set_index(["split", "path"]))
        if frames[-1].index.duplicated().any():
            raise DataError(f"{Path(run) / PREDICTIONS} predicts an image twice in one split; train the run again")
    first = frames[0]
    for run, frame in zip(runs[1:], frames[1:]):
        if len(frame) != len(first) or not frame.index.isin(first.index).all():
            raise DataError(f"{Path(run) / PREDICTIONS} does not predict the same images as "
                            f"{Path(runs[0]) / PREDICTIONS} ({len(frame)} against {len(first)} rows); an ensemble's "
                            "members are runs of one rotation, seed and data folder: name runs of one of each")
    probs = np.mean([f.loc[first.index, columns].to_numpy(np.float64) for f in frames], axis=0)
    with np.errstate(divide="ignore"):
        log_probs = np.log(probs)
    out = first[["generator", "subclass"]].reset_index()
    out["pred"] = [generators[i] for i in probs.argmax(1)]
    for i, g in enumerate(generators):
        out[f"{PROBABILITY_PREFIX}{g}"] = probs[:, i].astype(np.float32)
    for i, g in enumerate(generators):
        out[f"{LOG_PROBABILITY_PREFIX}{g}"] = log_probs[:, i]
    return out[["path", "split", "generator", "subclass", "pred", *columns,
                *(f"{LOG_PROBABILITY_PREFIX}{g}" for g in generators)]]


# --- a finished run back as objects ---
@dataclass
class LoadedRun:
    dir: Path
    config: Config
    technique: Any      # an attrlib.techniques.Technique, in eval mode
    data: StudyData     # the data it was trained on (or the one passed in)

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


def load_run(run: str | os.PathLike, data: StudyData | None = None, data_root: str | os.PathLike | None = None,
             device: str | torch.device = "cpu", cache: dict | None = None) -> LoadedRun:
    """Rebuild the trained technique of a finished run folder.

    data: a StudyData to reuse (its generators must be the run's); data_root: where the run's data lies now,
    when the path in its config.json no longer resolves (e.g. runs copied from another machine). Neither
    given: the config's own `data` path. cache: a dict shared by several calls, so runs trained on the same
    data (same path, held-out subclasses and val fraction) read the folder once.
    """
    run = Path(run)
    config = read_config(run)
    if not is_done(run):
        raise CheckpointError(f"run {run} has no '{DONE}' marker: it did not finish; train it with "
                              "attrlib.sweep.train(config) first")
    if data is None:
        data = _cached_data(config if data_root is None else config.replace(data=str(data_root)), cache)
    _check_generators(run, data)
    if techniques.get(config.technique).assembled:
        members = load_metrics(run).get("members", [])
        raise CheckpointError(f"run {run} is an {config.technique} of finished runs "
                              f"({', '.join(members) or 'none named'} under {config.runs}): it has no model of its own "
                              "to load; load one of its members")
    technique = techniques.build_technique(config, data)
    advice = "delete the run folder so that attrlib.sweep.train trains it again"
    state = read_checkpoint(run, "checkpoint", advice)
    try:
        technique.load_state_dict(trained_state(state))
    except Exception as err:
        raise CheckpointError(f"cannot load the trained technique from {run / CHECKPOINT}: {err}; {advice}") from None
    technique.to(device).eval()
    return LoadedRun(dir=run, config=config, technique=technique, data=data)


def _cached_data(config: Config, cache: dict | None) -> StudyData:
    if cache is None:
        return load_config_data(config)
    key = (os.path.abspath(config.data), tuple(config.heldout), config.val_fraction, config.val_subclass,
           tuple(config.unknown_generators))
    if key not in cache:
        cache[key] = load_config_data(config)
    return cache[key]


def _check_generators(run: Path, data: StudyData) -> None:
    pred = run / PREDICTIONS
    if not pred.is_file():
        return
    run_generators = generators_of(pd.read_csv(pred, nrows=0))
    if run_generators and run_generators != list(data.generators):
        raise DataError(f"{pred} was made for generators {run_generators} but the data has {list(data.generators)}; "
                        "pass the StudyData (or data_root) the run was trained on")


def iter_runs(runs: Mapping[str, Sequence[str | os.PathLike]], data: StudyData | None = None, split: str | None = None,
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
