"""Runs, above the engine: train or reuse one run, every seed of a technique, several techniques.

    train(config) -> runs/<technique>/<run id>/     (reused when done; trained under a per-run lock)
    train_seeds("baseline", "default", **overrides) -> [run folders]
    train_many(["baseline", "group_dro"], "default", **common) -> {label: [run folders]}
    search(...) -> the best of a technique's hyper-parameter draws by its model-selection rule
    plan(...) -> [Arm]: what train_many trains, as independent items (an arm on a rotation: draws, then seeds)

An arm is a label and the Config overrides it stands for (a technique, or a technique with other options).

A list of run folders spans the rotations (each a held-out subclass, `rotations=`) times the seeds, rotation
by rotation; each run's config.json says which rotation and seed it is.

`train` is the one way a run comes to be: parameters are checked before any work, the run's lock is taken
(a second process asking for the same run waits, then reuses it), a technique's `starts_from` run is
trained or reused first, the engine fits the run and writes its predictions, evaluation scores them into
metrics.json, and `done` marks the folder finished.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import hparams, records, runfolder, selection, techniques
from .config import PROFILES, Config, profile as make_profile
from .data import StudyData, load_config_data
from .errors import ConfigError
from .evaluation.metrics import run_metrics
from .io import exclusive_lock
from .models import check_pretrained
from .rotation import Rotation
from .provenance import code_commit
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
    if config.pretrained:  # "imagenet" for a backbone without packaged weights, or a file that is not there
        check_pretrained(config.backbone, config.pretrained)
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
        print(f"{config.technique} seed {config.seed}: another process is training run "
              f"{run.parent.name}/{run.name}; waiting to reuse it",
              file=sys.stderr, flush=True)

    with exclusive_lock(runfolder.lock_path(run), on_wait=waiting, blocking=wait) as held:
        if not held:
            return None
        if runfolder.is_done(run):
            return run
        return _train(config, cls, data, run, progress)


def _train(config: Config, cls: type[techniques.Technique], data: StudyData, run: Path, progress: bool) -> Path:
    params = {**cls.defaults, **config.technique_params}
    if cls.cross_fit and params["fold"] < 0:
        return _assemble_folds(config, cls, data, run, params, progress)
    if cls.assembled:
        return _assemble_members(config, cls, data, run, params)
    # the run this one starts from (fine_tuning: the baseline of the same config), trained or reused first
    upstream_config = runfolder.upstream_config(config)
    upstream = train(upstream_config, progress=progress) if upstream_config is not None else None
    fitted = fit(config, data, run, init_from=upstream, progress=progress)
    if fitted.predictions is not None:  # rank 0 scores and finishes the run
        metrics = run_metrics(fitted.predictions, data.generators, cls.heldout_split,
                              train_prior=fitted.summary.get("train_prior"))
        metrics.update(technique=config.technique, description=cls.description, run_id=run.name, seed=config.seed,
                       uses_target_data=cls.uses_target_data, commit=code_commit(), **fitted.summary)
        runfolder.write_metrics(run, metrics)
        runfolder.mark_done(run)
    distributed.barrier()
    return run


def _assemble_folds(config: Config, cls: type[techniques.Technique], data: StudyData, run: Path,
                    params: dict[str, Any], progress: bool) -> Path:
    """A cross-fitted technique's run (the target-data reference): its `folds` fold runs trained or reused, their
    held-out predictions concatenated into one predictions.csv (each image once, scored by the fold that held
    it out), scored as one run; metrics.json lists the fold runs (`folds`) and their mean training prior."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(f"{config.technique!r} assembles its fold runs in one process; train it without torchrun "
                          "(or train each fold, technique_params fold=0..folds-1, under torchrun first)")
    folds = [train(config.replace(technique_params={**config.technique_params, "fold": i}), progress=progress)
             for i in range(int(params["folds"]))]
    predictions = runfolder.cross_fitted_predictions(folds, cls.heldout_split,
                                                     {"ft_test": list(data.split("ft_test")["path"])})
    return _write_assembled(config, cls, data, run, predictions, [r.metrics for r in records.collect(folds)],
                            uses_target_data=cls.uses_target_data, hparams=params,
                            folds=[f"{f.parent.name}/{f.name}" for f in folds])


def _write_assembled(config: Config, cls: type[techniques.Technique], data: StudyData, run: Path,
                     predictions, parts: list[dict[str, Any]], **fields: Any) -> Path:
    """Write a run assembled from other runs (`parts`: their metrics) and mark it done: its config, `predictions`,
    and metrics.json scored from them, with the parts' mean training prior, their summed training time, the first
    part's selection record and `fields`."""
    prior = {g: sum(m["train_prior"][g] for m in parts) / len(parts) for g in data.generators}
    run.mkdir(parents=True, exist_ok=True)
    runfolder.write_config(run, config)
    runfolder.write_predictions(run, predictions)
    metrics = run_metrics(predictions, data.generators, cls.heldout_split, train_prior=prior)
    metrics.update(technique=config.technique, description=cls.description, run_id=run.name, seed=config.seed,
                   selection=parts[0].get("selection"), val_subclass=data.val_subclass, train_prior=prior,
                   train_seconds=round(sum(m.get("train_seconds", 0.0) for m in parts), 3), **fields)
    runfolder.write_metrics(run, metrics)
    runfolder.mark_done(run)
    return run


def _assemble_members(config: Config, cls: type[techniques.Technique], data: StudyData, run: Path,
                      params: dict[str, Any]) -> Path:
    """An assembled technique's run (the ensemble): its `members`, finished runs under the same runs folder, averaged
    into one predictions.csv (`runfolder.averaged_predictions`), scored as one run; metrics.json names the members,
    their mean training prior and their summed training time. Nothing is trained: a member that is not finished
    raises ConfigError naming it."""
    members = [Path(config.runs) / m for m in params["members"]]
    unfinished = [str(m) for m in members if not runfolder.is_done(m)]
    if unfinished:
        raise ConfigError(f"{config.technique!r} averages finished runs; {unfinished} are not finished: train them "
                          "first (notebook 11 names an ensemble's members from runs it has trained)")
    member_records = records.collect(members)
    bad = [str(r.folder) for r in member_records if r.config.heldout != config.heldout or r.seed != config.seed
           or r.rotation.val_subclass != data.val_subclass]
    if bad:
        raise ConfigError(f"{bad} are not runs of rotation {config.heldout.key} (validation subclass "
                          f"{data.val_subclass}) and seed {config.seed}, the ensemble's; an ensemble averages runs of "
                          "one rotation and seed: name members of that rotation and seed")
    fitted = [r.metrics for r in member_records]
    return _write_assembled(config, cls, data, run, runfolder.averaged_predictions(members, data.generators), fitted,
                            uses_target_data=any(m.get("uses_target_data", False) for m in fitted), hparams=params,
                            members=list(params["members"]), commit=code_commit())


@dataclass(frozen=True)
class Arm:
    """One arm (a label and its Config overrides) on one rotation, as the sweep trains it: its hyper-parameter
    draws, each a Config at the search's seed (one draw: the defaults only), and the seeds the chosen draw then
    trains (`runs`). Arms are independent of each other: `attrlib.launch` trains them on a cluster."""

    label: str
    draws: tuple[Config, ...]
    seeds: tuple[int, ...]

    def runs(self, chosen: int = 0) -> list[Config]:
        """The seeds' Configs of draw `chosen` (`best_draw` of the draws' run folders; the draw's own seed is
        the same run, reused)."""
        return [self.draws[chosen].replace(seed=int(s)) for s in self.seeds]


def plan(arms: Iterable[str] | Mapping[str, Mapping[str, Any]], profile: str = "default",
         seeds: tuple[int, ...] | list[int] | None = None, rotations: Iterable[Iterable[str] | str] | None = None,
         draws: int | None = None, **common: Any) -> list[Arm]:
    """The arms `train_many` trains (same arguments), label by label, rotation by rotation; nothing is trained."""
    if not isinstance(arms, Mapping) or not all(isinstance(v, Mapping) for v in arms.values()):
        arms = {name: {"technique": name} for name in arms}  # names (or techniques.available(): name -> text)
    if profile not in PROFILES:
        make_profile(profile)  # raises, listing the valid profiles
    draws = int(PROFILES[profile].get("draws", 1) if draws is None else draws)
    if draws < 1:
        raise ConfigError(f"draws={draws} must be 1 (the defaults only) or more")
    common = dict(common)
    held = [common.pop("heldout")] if "heldout" in common else [make_profile(profile)[0].heldout]
    rotations = [Rotation([r] if isinstance(r, str) else r) for r in (rotations or held)]
    # each rotation resolved once, on the study's data: it carries its validation subclass down into every job's
    # Configs (`heldout`; `Config.val_subclass` takes it), so an oracle trained on a twin of the benchmark (other
    # counts) leaves out the same subclass as the runs it is compared with
    study, profile_seeds = make_profile(profile, **common)
    rotations = [runfolder.resolved_rotation(study.replace(heldout=tuple(r))) for r in rotations]  # on this data
    seeds = tuple(int(s) for s in (seeds or profile_seeds))
    return [Arm(label, tuple(_config(profile, common, c, rotation) for c in candidates(overrides, draws)), seeds)
            for label, overrides in arms.items() for rotation in rotations]


def train_many(arms: Iterable[str] | Mapping[str, Mapping[str, Any]], profile: str = "default",
               seeds: tuple[int, ...] | list[int] | None = None, progress: bool = True,
               rotations: Iterable[Iterable[str] | str] | None = None, draws: int | None = None,
               **common: Any) -> dict[str, list[Path]]:
    """Train (or reuse) several arms for every rotation and seed: {label: run folders, rotation-major}.

    arms: technique names, or {label: Config overrides including "technique"} (e.g. a stem variant of the
    baseline). rotations: the held-out subclass(es) of each rotation (default: the `heldout` of `common` or
    the profile's: one rotation). draws: hyper-parameter draws searched per rotation before the seeds are
    trained (`search`; default: the profile's `draws`, 1 = the defaults only). common: overrides for all
    (data, runs, device, ...). Runs another process is training (a notebook running beside this one in a
    parallel study) are passed over on the first pass and waited for at the end, so this process trains what
    nobody trains yet instead of idling on a lock.
    """
    configs: dict[str, list[Config]] = {}
    for arm in plan(arms, profile, seeds, rotations, draws, **common):
        chosen = (best_draw([train(c, progress=progress) for c in arm.draws], arm.draws[0].selection)
                  if len(arm.draws) > 1 else 0)
        configs.setdefault(arm.label, []).extend(arm.runs(chosen))
    found = {label: [train(c, progress=progress, wait=False) for c in cs] for label, cs in configs.items()}
    return {label: [d if d is not None else train(c, progress=progress) for d, c in zip(found[label], cs)]
            for label, cs in configs.items()}


def finished(jobs: Iterable[str] | Mapping[str, Mapping[str, Any]], profile: str = "default",
             seeds: tuple[int, ...] | list[int] | None = None, rotations: Iterable[Iterable[str] | str] | None = None,
             draws: int | None = None, **common: Any) -> dict[str, list[Path]]:
    """The run folders `train_many` (same arguments) returns, found without training anything (a finished
    study's runs, e.g. for `attrlib predict --study`); a run that is missing or unfinished raises ConfigError
    naming its folder."""
    def done(config: Config) -> Path:
        run = runfolder.run_dir(config)
        if not runfolder.is_done(run):
            raise ConfigError(f"{run}: the {config.technique} run of rotation {config.heldout.key}, seed "
                              f"{config.seed} is not finished; train it first (attrlib study, or attrlib launch "
                              "with the study's options) or check that runs/ and the data are where the study had them")
        return run

    found: dict[str, list[Path]] = {}
    for arm in plan(jobs, profile, seeds, rotations, draws, **common):
        chosen = best_draw([done(c) for c in arm.draws]) if len(arm.draws) > 1 else 0
        found.setdefault(arm.label, []).extend(done(c) for c in arm.runs(chosen))
    return found


def candidates(overrides: Mapping[str, Any], draws: int) -> list[dict[str, Any]]:
    """The Config overrides of an arm's `draws` hyper-parameter draws (`attrlib.hparams.draw`; draw 0 = its
    defaults, the overrides themselves)."""
    cls = techniques.get(overrides["technique"])
    found = []
    for d in range(int(draws)):
        extra = hparams.draw(cls, d)
        params = {**overrides.get("technique_params", {}), **extra.pop("technique_params", {})}
        found.append({**overrides, **extra, **({"technique_params": params} if params else {})})
    return found


def best_draw(dirs: list[Path], rule: str = selection.KEPT) -> int:
    """The index of the best run of a search: `selection.choose` over each run's score under `rule` (the
    searched Configs' `selection`; rule (b), the validation subclass, by default: `selection.score`), applied
    to the finished runs (a run trained under another rule is the same run); ties go to the lower draw, so the
    defaults win unless a draw does better; no draw with a score: draw 0. The test set is never read."""
    chosen = selection.choose({i: rec.score(rule).value for i, rec in enumerate(records.collect(dirs))})
    return 0 if chosen is None else chosen


def _config(profile: str, common: Mapping[str, Any], overrides: Mapping[str, Any], rotation: Iterable[str],
            seed: int = 0) -> Config:
    return make_profile(profile, **{**common, **overrides, "heldout": Rotation(rotation)})[0].replace(seed=seed)


def search(overrides: Mapping[str, Any], profile: str, rotation: Iterable[str], draws: int, seed: int = 0,
           progress: bool = True, **common: Any) -> tuple[dict[str, Any], list[Path]]:
    """Train `draws` hyper-parameter draws of one arm (`candidates`) on one rotation with seed `seed`, and
    return (the overrides of the best draw by `best_draw`, every draw's run folder)."""
    found = candidates(overrides, draws)
    configs = [_config(profile, common, c, rotation, seed) for c in found]
    dirs = [train(c, progress=progress) for c in configs]
    return found[best_draw(dirs, configs[0].selection)], dirs


def train_seeds(technique: str, profile: str = "default", seeds: tuple[int, ...] | list[int] | None = None,
                progress: bool = True, rotations: Iterable[Iterable[str] | str] | None = None,
                draws: int | None = None, **overrides: Any) -> list[Path]:
    """Train (or reuse) `technique` for every rotation and seed of a profile (or the given ones); the run folders.

    overrides are Config fields (data, runs, device, steps, technique_params, ...), as a notebook's
    parameters cell or the CLI gives them.
    """
    # the technique's own parameters stay with the arm (a draw merges its own into them); everything else (data,
    # runs, heldout, ...) is common to the study, so that `plan` resolves the rotation on the data given here
    own = {k: overrides.pop(k) for k in ("technique_params",) if k in overrides}
    return train_many({technique: {"technique": technique, **own}}, profile, seeds, progress,
                      rotations=rotations, draws=draws, **overrides)[technique]
