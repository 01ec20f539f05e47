"""Runs, above the engine: train or reuse one run, every seed of a technique, several techniques.

    train(config) -> runs/<technique>/<run id>/     (reused when done; trained under a per-run lock)
    train_seeds("baseline", "default", **overrides) -> [run folders]
    train_many(["baseline", "group_dro"], "default", **common) -> {label: [run folders]}

`train` is the one way a run comes to be: parameters are checked before any work, the run's lock is taken
(a second process asking for the same run waits, then reuses it), a technique's `starts_from` run is
trained or reused first, the engine fits the run and writes its predictions, evaluation scores them into
metrics.json, and `done` marks the folder finished.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import runfolder, techniques
from .config import Config, profile as make_profile
from .data import StudyData, load_config_data
from .errors import ConfigError
from .evaluation.metrics import run_metrics
from .io import exclusive_lock
from .training import distributed, fit, pick_device


def train(config: Config, progress: bool = True, wait: bool = True) -> Path | None:
    """Train (or reuse, or resume) the run `config` describes and return its folder.

    Another process training the same run holds its lock: wait for it and reuse its result, or with
    wait=False return None at once (`train_many` comes back to it later). Under torchrun (WORLD_SIZE > 1)
    every rank calls this and the ranks train the run together (no lock).
    """
    # every check that can fail on a parameter runs before any work: no run folder for a bad config
    config.validate()
    cls = techniques.get(config.technique)  # unknown names list the valid ones
    cls.check_params(config.technique_params)
    pick_device(config.device)
    run = runfolder.run_dir(config)
    if runfolder.is_done(run):
        return run
    # the data is checked before anything is written (a held-out subclass absent from it fails here): bad
    # input leaves no run folder behind
    data = load_config_data(config)
    if not len(data.split(cls.train_split)):
        raise ConfigError(f"{config.technique!r} trains on the {cls.train_split!r} split, which is empty in "
                          f"{config.data!r}; check the data and the held-out subclass(es) {list(config.heldout)}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return _train(config, cls, data, run, progress)

    def waiting() -> None:
        print(f"{config.technique} seed {config.seed}: another process is training {run}; waiting to reuse it",
              file=sys.stderr, flush=True)

    with exclusive_lock(runfolder.lock_path(run), on_wait=waiting, blocking=wait) as held:
        if not held:
            return None
        if runfolder.is_done(run):
            return run
        return _train(config, cls, data, run, progress)


def _train(config: Config, cls: type[techniques.Technique], data: StudyData, run: Path, progress: bool) -> Path:
    # the run this one starts from (fine_tuning: the baseline of the same config), trained or reused first
    upstream = (train(config.replace(technique=cls.starts_from, technique_params={}), progress=progress)
                if cls.starts_from else None)
    fitted = fit(config, data, run, init_from=upstream, progress=progress)
    if fitted.predictions is not None:  # rank 0 scores and finishes the run
        metrics = run_metrics(fitted.predictions, data.generators, cls.heldout_split)
        metrics.update(technique=config.technique, description=cls.description, run_id=run.name, seed=config.seed,
                       uses_target_data=cls.uses_target_data, **fitted.summary)
        runfolder.write_metrics(run, metrics)
        runfolder.mark_done(run)
    distributed.barrier()
    return run


def train_many(jobs: Iterable[str] | Mapping[str, Mapping[str, Any]], profile: str = "default",
               seeds: tuple[int, ...] | list[int] | None = None, progress: bool = True,
               **common: Any) -> dict[str, list[Path]]:
    """Train (or reuse) several techniques for every seed: {label: run folders, one per seed}.

    jobs: technique names, or {label: Config overrides including "technique"} (e.g. a stem variant of the
    baseline). common: overrides for all (data, runs, device, ...). Runs another process is training (a
    notebook running beside this one in a parallel study) are passed over on the first pass and waited for
    at the end, so this process trains what nobody trains yet instead of idling on a lock.
    """
    if not isinstance(jobs, Mapping) or not all(isinstance(v, Mapping) for v in jobs.values()):
        jobs = {name: {"technique": name} for name in jobs}  # names (or techniques.available(): name -> text)
    configs = {}
    for label, overrides in jobs.items():
        config, profile_seeds = make_profile(profile, **{**common, **overrides})
        configs[label] = [config.replace(seed=int(s)) for s in (seeds or profile_seeds)]
    found = {label: [train(c, progress=progress, wait=False) for c in cs] for label, cs in configs.items()}
    return {label: [d if d is not None else train(c, progress=progress) for d, c in zip(found[label], cs)]
            for label, cs in configs.items()}


def train_seeds(technique: str, profile: str = "default", seeds: tuple[int, ...] | list[int] | None = None,
                progress: bool = True, **overrides: Any) -> list[Path]:
    """Train (or reuse) `technique` for every seed of a profile (or the given seeds); the run folders.

    overrides are Config fields (data, runs, device, epochs, technique_params, ...), as a notebook's
    parameters cell or the CLI gives them.
    """
    return train_many({technique: {"technique": technique, **overrides}}, profile, seeds, progress)[technique]
