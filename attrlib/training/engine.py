"""The engine: train one run of one technique into its run folder, and predict with it.

    fitted = fit(config, data, run)     # run = attrlib.runfolder.run_dir(config)

It owns the loop over epochs, scoring and model selection, checkpoints and predictions; a technique owns its model
and its step (`attrlib.techniques.base`); the run folder's format belongs to `attrlib.runfolder`; locking,
reuse, upstream runs and metrics belong to the sweep (`attrlib.sweep`), which is what notebooks call. A
folder with a checkpoint resumes after its last finished epoch with the optimiser and random states it had,
so its predictions equal an uninterrupted run's (on the CPU, at the same thread count).

Model selection (the rules: `attrlib.selection`): at `config.checkpoints` epoch ends the attribution model is
scored on `val` (rule a: in-distribution), on `valsub` (rule b: the validation subclass, kept out of training)
and on `test`; every point's scores go to history.jsonl and its test predictions to trajectory.csv, so any rule
(rule (c), the test-set oracle, as an upper bound) applies after the fact, and the test set never chooses. The
run keeps the state of the best point under `selection.KEPT` (rule b, whatever `config.selection` a reader
applies later; ties: the later point) and predicts with it; metrics.json says which.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import copy
import time

import numpy as np
import pandas as pd
import torch

from .. import runfolder, selection, techniques
from ..config import Config
from ..data import StudyData
from ..errors import ConfigError, DataError
from ..io import remove_stale_temporaries
from ..progress import say
from ..techniques import Technique, predict_log_probs
from . import distributed
from .checkpoint import checkpoint_state, load_checkpoint
from .loop import make_loader, pick_device, seed_everything, train_one_epoch

EVAL_SPLITS = ("val", "valsub", "test", "ft_test")  # predicted after training when not empty
SCORED_SPLITS = ("val", "valsub", "test")   # scored at each scoring point: rule (a), rule (b), and the trajectory


@dataclass
class Fitted:
    run: Path
    technique: Technique
    predictions: pd.DataFrame | None     # None on the ranks of a torchrun job other than 0
    summary: dict[str, Any] = field(default_factory=dict)  # hparams, epochs, device, timing (for metrics.json)


def fit(config: Config, data: StudyData, run: Path, init_from: Path | None = None, progress: bool = True) -> Fitted:
    """Train (or resume) the run `config` describes in the folder `run` and write its predictions.

    init_from: a finished run folder whose trained technique this one starts from (a technique's
    `starts_from`, e.g. fine_tuning from the baseline). Under torchrun every rank calls this.
    """
    device = distributed.local_device(pick_device(config.device))
    rank, world_size = distributed.setup(device)
    main = rank == 0
    progress = progress and main

    seed_everything(config.seed)
    technique = techniques.build_technique(config, data)
    if technique.cross_fit:  # one fold of a cross-fitted technique: the other folds' held-out images train it
        data = data.cross_fit(technique.hparams["fold"], technique.hparams["folds"])
    if init_from is not None:
        start_from(technique, Path(init_from))
    technique.to(device)
    loader_generator = torch.Generator().manual_seed(config.seed)
    train_loader = make_loader(data.split(technique.train_split), data, config, train=True,
                               sampler_weights=technique.sampler_weights, generator=loader_generator, device=device,
                               progress=None if progress else False, batch_size=technique.batch_size)
    scorers = {}  # split -> (loader, true generator indices), on rank 0 only
    for split in SCORED_SPLITS if main else ():
        frame = data.split(split)
        if len(frame):
            loader = make_loader(frame, data, config, train=False, device=device)
            scorers[split] = (loader, data.labels(loader.dataset.frame)["generator"])
    rule = selection.applicable(selection.KEPT, scorers)
    kept_scores = None  # the kept point's log-probabilities per scored split: its predictions, not computed twice

    if main:
        run.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(run)  # left by a process killed mid-write; the targets themselves are whole
        runfolder.write_config(run, config)
    distributed.barrier()
    if world_size > 1:  # every rank its own stream of random crops (restored per rank on resume)
        torch.manual_seed(config.seed * world_size + rank)
    ckpt = run / runfolder.CHECKPOINT
    # resuming restores the random states last, so the next epoch draws what an uninterrupted run would
    start_epoch = load_checkpoint(run, technique, loader_generator) if ckpt.exists() else 0
    history = runfolder.read_history(run, start_epoch)
    selected = runfolder.read_checkpoint(run).get("selected") if start_epoch and main else None
    trajectory = _resumed_trajectory(run, history) if main else []
    prepare_seconds = None
    if not ckpt.exists():  # a fresh run: a technique fitted in closed form fits here (Technique.prepare)
        started = time.perf_counter()
        technique.prepare(train_loader)
        prepare_seconds = round(time.perf_counter() - started, 3)
    distributed.broadcast_state(technique)
    distributed.average_gradients_before_step(technique.optimizers())

    # the budget is in optimiser steps; epochs are derived, the last one cut short
    steps, per_epoch = technique.steps, len(train_loader)
    epochs = -(-steps // per_epoch)
    points = scoring_epochs(epochs, config.checkpoints)
    for epoch in range(start_epoch, epochs):
        if world_size > 1:
            train_loader.sampler.set_epoch(epoch)
        done = min(steps, (epoch + 1) * per_epoch)
        technique.progress = done / steps  # the share of the budget done when this epoch ends: schedules read it
        try:
            stats = train_one_epoch(technique, train_loader, device, epoch, epochs, progress,
                                    max_steps=done - epoch * per_epoch)
        except DataError as err:  # a streamed file that vanished or broke mid-training
            done_epochs = f"epochs 1-{epoch} are checkpointed in {run}" if epoch else "no epoch had finished"
            raise DataError(f"{err}\n  -> training stopped in epoch {epoch + 1} of {epochs}; {done_epochs}: "
                            "fix the data and run the same command again to resume") from None
        distributed.average_buffers(technique)
        if main and epoch in points:
            technique.eval()  # the attribution model itself: cheap, whatever the technique does at test time
            scores = score_splits(technique.model, scorers, device, technique.n_generators)
            for split, (loader, true) in scorers.items():
                probs = np.exp(scores[split]).astype(np.float32)
                stats[f"{split}_accuracy"] = float((probs.argmax(1) == true).mean())
                if split == "test":
                    trajectory.append(runfolder.prediction_frame(loader.dataset.frame, split, data.generators, probs)
                                      .assign(step=done))
            score = 0.0 if rule == "last" else stats[selection.RULES[rule]]
            if selection.better(score, selected):
                selected = dict(rule=rule, epoch=epoch, step=done, score=score,
                                technique=copy.deepcopy(technique.state_dict()))
                kept_scores = scores if technique.predicts_with_model else None
            technique.train()
        state = checkpoint_state(technique, epoch, loader_generator)  # every rank: the random states are gathered
        if not main:
            continue
        state["selected"] = selected
        if world_size > 1:
            stats.update(world_size=world_size, images=stats["images"] * world_size)
        history.append({"epoch": epoch, "step": done, **stats})
        if trajectory and epoch in points:  # it changes at scoring points only (not once per epoch of a long run)
            runfolder.write_trajectory(run, trajectory)
        runfolder.write_history(run, history)
        runfolder.write_checkpoint(run, state)
        # the run's train.log holds the line (written with the history); a terminal shows it, a notebook does not
        say(f"{config.technique} seed {config.seed} of {epochs} epochs, {runfolder.log_line(history[-1])}", progress)
    if start_epoch == 0 and epochs == 0:  # zero epochs: keep the (initial or upstream) weights all the same
        state = checkpoint_state(technique, -1, loader_generator)
        if main:
            runfolder.write_checkpoint(run, state)
    if not main:
        return Fitted(run, technique, None)

    if selected is not None:  # predict with the state the rule kept
        technique.load_state_dict(selected["technique"])
    # the scored splits' loaders (their images decoded once) and, when the kept point was scored in this process,
    # its scores: the same model, state and batches, so the same numbers (a resumed run whose kept point came
    # before the interruption predicts them again)
    predictions = predict_splits(technique, data, config, device, loaders={k: v[0] for k, v in scorers.items()},
                                 known=kept_scores)
    runfolder.write_predictions(run, predictions)
    seconds = sum(h["seconds"] for h in history)
    # the generator shares training drew (the prior the model learned; the LLR charts remove it)
    prior = technique.training_prior(train_loader.dataset.frame)
    choice = {k: v for k, v in (selected or {}).items() if k != "technique"}
    summary = dict(hparams=technique.hparams, steps=steps, epochs=epochs, device=str(device),
                   selection=dict(requested=selection.KEPT, **(choice or dict(rule="last", step=steps))),
                   val_subclass=data.val_subclass,
                   train_prior={g: float(v) for g, v in zip(data.generators, prior)},
                   **({"world_size": world_size} if world_size > 1 else {}),
                   train_seconds=round(seconds, 3),
                   # the one-off work before the first step (a closed-form fit, JTT's error set);
                   # absent on a resumed run, which does not repeat it
                   **({"prepare_seconds": prepare_seconds} if prepare_seconds is not None else {}),
                   train_images_per_second=round(sum(h["images"] for h in history) / max(seconds, 1e-9), 1))
    return Fitted(run, technique, predictions, summary)


def scoring_epochs(epochs: int, n: int) -> set[int]:
    """The 0-based epochs at whose end a run is scored: `n` spread evenly, the last one always."""
    return {-(-k * epochs // n) - 1 for k in range(1, n + 1)} & set(range(epochs)) | ({epochs - 1} if epochs else set())


def _resumed_trajectory(run: Path, history: list[dict]) -> list[pd.DataFrame]:
    """The trajectory rows of the epochs a resumed run keeps (those of its history)."""
    frame = runfolder.read_trajectory(run)
    if frame is None or not history:
        return []
    return [frame[frame["step"] <= history[-1]["step"]]]


def start_from(technique: Technique, upstream: Path) -> None:
    """Give `technique` the trained state of a finished run (`Technique.start_from`): the state its selection rule
    kept, or its last step's (`Technique.from_upstream`)."""
    advice = "delete that run folder so that it is trained again"
    state = runfolder.read_checkpoint(upstream, f"{technique.starts_from or 'upstream'} checkpoint", advice)
    try:
        last = technique.from_upstream == "last"
        technique.start_from(state["technique"] if last else runfolder.trained_state(state))
    except (KeyError, TypeError, RuntimeError) as err:
        raise ConfigError(f"cannot start {technique.name!r} from {str(upstream / runfolder.CHECKPOINT)!r}: "
                          f"{type(err).__name__}: {err}; {advice}") from None


def score_splits(model: torch.nn.Module, scorers: dict, device: torch.device, n: int) -> dict[str, np.ndarray]:
    """Log-probabilities (`predict_log_probs`) of the attribution model on each scored split, under inference mode
    (no autograd bookkeeping: the model's own forward pass needs none)."""
    with torch.inference_mode():
        return {split: predict_log_probs(model, loader, device, n) for split, (loader, _) in scorers.items()}


def predict_splits(technique: Technique, data: StudyData, config: Config, device: torch.device,
                   loaders: dict | None = None, known: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """predictions.csv rows for every non-empty split of EVAL_SPLITS, with `technique.predict`.

    loaders: evaluation loaders already built for some splits (the engine's scorers: not decoded twice);
    known: log-probabilities of `technique.predict` in its current state already computed for some splits
    (the scores of the kept point), used as they are. A technique whose prediction is its model's forward pass
    predicts under inference mode; one that transforms its inputs at test time may need gradients then."""
    technique.eval()
    loaders, known = loaders or {}, known or {}
    parts = []
    for split in EVAL_SPLITS:
        frame = data.split(split)
        if not len(frame):
            continue
        loader = loaders[split] if split in loaders else make_loader(frame, data, config, train=False, device=device)
        if split in known:
            log_probs = known[split]
        else:
            with torch.inference_mode(technique.predicts_with_model):
                log_probs = predict_log_probs(technique.predict, loader, device, technique.n_generators)
        # the rows the dataset kept (all of them unless on_bad="skip")
        parts.append(runfolder.prediction_frame(loader.dataset.frame, split, data.generators, log_probs=log_probs))
    if technique.heldout_split not in {p["split"].iat[0] for p in parts}:
        raise ConfigError(f"the split {technique.heldout_split!r} that {technique.name!r} is evaluated on is empty; "
                          f"check that the data holds images of the held-out subclass(es) {list(config.heldout)}")
    return pd.concat(parts, ignore_index=True)
