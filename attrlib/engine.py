"""One training loop for every technique, and the run folders it writes.

    train(config) -> runs/<technique>/<run id>/   config.json, history.jsonl, checkpoint.pt,
                                                  predictions.csv, metrics.json, done

The engine owns data, epochs, devices, seeding, evaluation and files; a technique owns its model and its
step (`attrlib.techniques.base`). A folder with `done` is reused as it is. A folder with a checkpoint but
no `done` (a run that was interrupted) resumes after its last finished epoch, with the optimiser and
random-number states it had, so its metrics equal an uninterrupted run's (on the CPU). Every file is
written atomically: a reader (or a crash) never sees half of one.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler
from tqdm.auto import tqdm

from . import distributed, techniques
from .config import Config
from .errors import CheckpointError, ConfigError, DataError
from .io import (atomic_open, atomic_torch_save, atomic_write_json, atomic_write_text, exclusive_lock,
                 remove_stale_temporaries)
from .models.weights import safe_load

SPLIT_SEED = 0  # the train/val and ft_train/ft_test splits stay fixed across training seeds: seeds vary the model only


def run_dir(config: Config) -> Path:
    return Path(config.runs) / config.technique / config.run_id()


def is_done(config: Config) -> bool:
    return (run_dir(config) / "done").exists()


def pick_device(name: str = "auto") -> torch.device:
    """cuda, then mps, then cpu for "auto"; a named device that is not there is an error, not a fallback."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if not available.get(name, False):
        raise ConfigError(f"device {name!r} is not available here; valid choices: auto, "
                          + ", ".join(k for k, ok in available.items() if ok))
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_data(config: Config):
    from .data import load_study_data

    return load_study_data(config.data, heldout=config.heldout, val_fraction=config.val_fraction,
                           seed=SPLIT_SEED, on_bad="raise")


def make_loader(frame: pd.DataFrame, data, config: Config, train: bool, sampler_weights=None,
                generator: torch.Generator | None = None, device: torch.device | None = None,
                progress: bool | None = False) -> DataLoader:
    """A training loader (shuffled, or drawn with replacement by `sampler_weights(frame)` when that gives
    weights) or an evaluation loader (in order, twice the batch size)."""
    from .data import ImageDataset

    dataset = ImageDataset(frame, data, policy=config.input_policy, size=config.image_size, train=train, progress=progress)
    common = dict(num_workers=config.num_workers, pin_memory=device is not None and device.type == "cuda",
                  persistent_workers=config.num_workers > 0)
    if not train:
        return DataLoader(dataset, batch_size=2 * config.batch_size, shuffle=False, **common)
    weights = sampler_weights(dataset.frame) if sampler_weights is not None else None
    rank, world_size = distributed.world()
    if world_size > 1:  # under torchrun
        # each rank draws a disjoint share of the epoch's (weighted) sample; the engine calls set_epoch
        sampler = distributed.EpochSampler(len(dataset), weights, seed=config.seed, rank=rank, world_size=world_size)
        # batch_size is the global batch: N ranks take steps of batch_size / N each, so a run does the
        # same number of steps of the same size whatever N (the same run id, the same metrics in expectation)
        return DataLoader(dataset, batch_size=-(-config.batch_size // world_size), sampler=sampler, **common)
    elif weights is not None:
        # with replacement, as many draws as images: one epoch is still len(frame) images (seed 002 §3.2)
        sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples=len(dataset),
                                        replacement=True, generator=generator)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    return DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, **common)


def _generator_labels(frame: pd.DataFrame, generators: list[str]) -> np.ndarray:
    return frame["generator"].map({g: i for i, g in enumerate(generators)}).to_numpy(dtype=np.int64)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def train_one_epoch(technique, loader: DataLoader, device: torch.device, epoch: int, epochs: int,
                    progress: bool = True) -> dict[str, float]:
    technique.train()
    technique.start_epoch(epoch, epochs)
    sums: dict[str, float] = defaultdict(float)
    seen = 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"{technique.name} epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
    for batch in bar:
        batch = _to_device(batch, device)
        stats = technique.update(batch)
        n = int(batch["x"].shape[0])
        for k, v in stats.items():
            sums[k] += float(v) * n
        seen += n
        bar.set_postfix(loss=f"{stats.get('loss', float('nan')):.3f}", refresh=False)
    seconds = time.perf_counter() - start
    out = {k: v / max(seen, 1) for k, v in sums.items()}
    out.update(images=seen, seconds=round(seconds, 3), images_per_second=round(seen / max(seconds, 1e-9), 1))
    return out


@torch.no_grad()
def predict_probs(technique, loader: DataLoader, device: torch.device, use_monitor: bool = False,
                  progress: bool = False, desc: str = "predict") -> np.ndarray:
    """Softmax probabilities (N, n_generators) in the loader's order."""
    technique.eval()
    fn = technique.monitor if use_monitor else technique.predict
    out = []
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        logits = fn(batch["x"].to(device, non_blocking=True))
        out.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, technique.n_generators), dtype=np.float32)


def split_metrics(y_true, y_pred, generators: list[str]) -> dict[str, Any]:
    """Seed-style metrics with scikit-learn: accuracy, macro averages, per-generator P/R/F1/support, confusion."""
    labels = list(range(len(generators)))
    rep = classification_report(y_true, y_pred, labels=labels, target_names=generators, output_dict=True,
                                zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_precision": float(rep["macro avg"]["precision"]),
        "macro_recall": float(rep["macro avg"]["recall"]),
        "macro_f1": float(rep["macro avg"]["f1-score"]),
        "per_generator": {g: {"precision": float(rep[g]["precision"]), "recall": float(rep[g]["recall"]),
                              "f1": float(rep[g]["f1-score"]), "support": int(rep[g]["support"])}
                          for g in generators},
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def _rng_state(loader_generator: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"python": random.getstate(), "torch": torch.get_rng_state(), "loader": loader_generator.get_state(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}


def _set_rng_state(state: dict[str, Any], loader_generator: torch.Generator) -> None:
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    torch.set_rng_state(state["torch"])
    loader_generator.set_state(state["loader"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))


def save_checkpoint(path: Path, technique, epoch: int, loader_generator: torch.Generator) -> None:
    atomic_torch_save({
        "epoch": epoch,  # the last finished epoch (0-based)
        "technique": technique.state_dict(),
        "optimizers": {k: opt.state_dict() for k, opt in technique.optimizers().items()},
        "rng": _rng_state(loader_generator),
    }, path)


def load_checkpoint(path: Path, technique, loader_generator: torch.Generator) -> int:
    """Restore a technique (model, optimisers, buffers) and the random states; returns the next epoch."""
    advice = "delete the file to train this run from the start"
    ckpt = safe_load(path, "checkpoint", advice)  # a pickle payload is refused here, before anything runs
    try:
        technique.load_state_dict(ckpt["technique"])
        for k, opt in technique.optimizers().items():
            opt.load_state_dict(ckpt["optimizers"][k])
        _set_rng_state(ckpt["rng"], loader_generator)
    except Exception as err:
        raise CheckpointError(f"cannot resume from {str(path)!r}: {type(err).__name__}: {err}; {advice}") from None
    return int(ckpt["epoch"]) + 1


def _read_history(path: Path, upto: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:  # the file is rewritten atomically, but a torn line (a copy, an old version) must not stop a resume
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int) and row["epoch"] < upto:
            rows.append(row)
    return rows


def train(config: Config, progress: bool = True, wait: bool = True) -> Path | None:
    """Train (or reuse, or resume) the run `config` describes and return its folder.

    Another process training the same run holds its lock: wait for it and reuse its result, or with
    wait=False return None at once (`train_many` comes back to it later). Under torchrun (WORLD_SIZE > 1)
    every rank calls this; see `attrlib.distributed`.
    """
    # every check that can fail on a parameter runs before any work: no run folder for a bad config
    config.validate()
    cls = techniques.get(config.technique)  # unknown names list the valid ones
    cls.check_params(config.technique_params)
    device = pick_device(config.device)
    out = run_dir(config)
    if (out / "done").exists():
        return out
    # the data is checked before anything is written (a held-out subclass absent from it fails here): bad
    # input leaves no run folder behind
    data = load_data(config)
    train_frame, val_frame = data.split(cls.train_split), data.split("val")
    if not len(train_frame):
        raise ConfigError(f"{config.technique!r} trains on the {cls.train_split!r} split, which is empty in "
                          f"{config.data!r}; check the data and the held-out subclass(es) {list(config.heldout)}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # ranks of one torchrun job train the run together
        return _train(config, cls, device, out, progress, data, train_frame, val_frame)

    # one trainer per run: a second process asking for it (a parallel study) waits, then reuses the result
    def waiting() -> None:
        print(f"{config.technique} seed {config.seed}: another process is training {out}; waiting to reuse it",
              file=sys.stderr, flush=True)

    with exclusive_lock(out.parent / f".{out.name}.lock", on_wait=waiting, blocking=wait) as held:
        if not held:
            return None
        if (out / "done").exists():
            return out
        return _train(config, cls, device, out, progress, data, train_frame, val_frame)


def _train(config: Config, cls, device: torch.device, out: Path, progress: bool, data, train_frame,
           val_frame) -> Path:
    # runs this one starts from (fine_tuning: the baseline of the same config), trained or reused first
    upstream = {name: train(config.replace(technique=name, technique_params={}), progress=progress)
                for name in cls.requires}
    device = distributed.local_device(device)
    rank, world_size = distributed.setup(device)
    main = rank == 0
    progress = progress and main

    seed_everything(config.seed)
    technique = techniques.build_technique(config, data)
    technique.prepare(upstream)
    technique.to(device)
    loader_generator = torch.Generator().manual_seed(config.seed)
    train_loader = make_loader(train_frame, data, config, train=True, sampler_weights=technique.sampler_weights,
                               generator=loader_generator, device=device, progress=None if progress else False)
    val_loader = make_loader(val_frame, data, config, train=False, device=device) if len(val_frame) and main else None
    val_true = None if val_loader is None else _generator_labels(val_loader.dataset.frame, data.generators)

    if main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)  # left by a process killed mid-write; the targets themselves are whole
        atomic_write_json(out / "config.json", config.to_dict())
    distributed.barrier()
    ckpt_path, hist_path = out / "checkpoint.pt", out / "history.jsonl"
    # resuming restores the random states last, so the next epoch draws what an uninterrupted run would
    start_epoch = load_checkpoint(ckpt_path, technique, loader_generator) if ckpt_path.exists() else 0
    history = _read_history(hist_path, start_epoch)
    distributed.broadcast_state(technique)
    distributed.average_gradients_before_step(technique.optimizers())

    epochs = technique.epochs
    # validation accuracy every epoch up to 15 epochs; beyond, about 15 times (fine tuning's 75 epochs)
    val_every = -(-epochs // 15) if epochs else 1
    for epoch in range(start_epoch, epochs):
        if world_size > 1:
            # per rank and epoch, so a resumed distributed run draws the crops an uninterrupted one would
            train_loader.sampler.set_epoch(epoch)
            torch.manual_seed(config.seed * 100003 + epoch * 1009 + rank)
        try:
            stats = train_one_epoch(technique, train_loader, device, epoch, epochs, progress)
        except DataError as err:  # a streamed file that vanished or broke mid-training
            done_epochs = f"epochs 1-{epoch} are checkpointed in {out}" if epoch else "no epoch had finished"
            raise DataError(f"{err}\n  -> training stopped in epoch {epoch + 1} of {epochs}; {done_epochs}: "
                            "fix the data and run the same command again to resume") from None
        distributed.average_buffers(technique)
        if not main:
            continue
        if val_loader is not None and ((epoch + 1) % val_every == 0 or epoch + 1 == epochs):
            probs = predict_probs(technique, val_loader, device, use_monitor=True)
            stats["val_accuracy"] = float(accuracy_score(val_true, probs.argmax(1)))
        if world_size > 1:
            stats.update(world_size=world_size, images=stats["images"] * world_size)
        history.append({"epoch": epoch, **stats})
        # the whole history is rewritten atomically (not appended): a kill leaves the old file or the new one
        atomic_write_text(hist_path, "".join(json.dumps(h, sort_keys=True) + "\n" for h in history))
        save_checkpoint(ckpt_path, technique, epoch, loader_generator)
        if progress:
            tqdm.write(f"{config.technique} seed {config.seed} epoch {epoch + 1}/{epochs}: loss "
                       f"{stats.get('loss', float('nan')):.4f}, val acc {stats.get('val_accuracy', float('nan')):.3f}, "
                       f"{stats['images_per_second']:.0f} img/s")
    if not main:
        distributed.barrier()  # rank 0 evaluates and writes the run files
        return out
    if not ckpt_path.exists():  # zero epochs: keep the (initial or upstream) weights all the same
        save_checkpoint(ckpt_path, technique, -1, loader_generator)

    predictions, metrics = evaluate(technique, data, config, device)
    with atomic_open(out / "predictions.csv", "w", encoding="utf-8", newline="") as fh:
        predictions.to_csv(fh, index=False)
    metrics.update(technique=config.technique, description=cls.description, run_id=config.run_id(),
                   seed=config.seed, uses_target_data=cls.uses_target_data, hparams=technique.hparams,
                   epochs=epochs, device=str(device), **({"world_size": world_size} if world_size > 1 else {}),
                   train_seconds=round(sum(h["seconds"] for h in history), 3),
                   train_images_per_second=round(sum(h["images"] for h in history)
                                                 / max(sum(h["seconds"] for h in history), 1e-9), 1))
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "done", time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
    distributed.barrier()
    return out


def evaluate(technique, data, config: Config, device: torch.device) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Predictions on the technique's `eval_splits` (empty ones skipped) and their metrics."""
    generators = list(data.generators)
    frames, metrics = [], {}
    for split in technique.eval_splits:
        frame = data.split(split)
        if not len(frame):
            continue
        loader = make_loader(frame, data, config, train=False, device=device)
        frame = loader.dataset.frame  # the rows the dataset kept (all of them unless on_bad="skip")
        probs = predict_probs(technique, loader, device)
        pred = probs.argmax(1)
        part = pd.DataFrame({"path": frame["path"].to_numpy(), "split": split,
                             "generator": frame["generator"].to_numpy(), "subclass": frame["subclass"].to_numpy(),
                             "pred": [generators[i] for i in pred]})
        for i, g in enumerate(generators):
            part[f"p_{g}"] = probs[:, i]
        frames.append(part)
        metrics[split] = split_metrics(_generator_labels(frame, generators), pred, generators)
    if technique.heldout_split not in metrics:
        raise ConfigError(f"the split {technique.heldout_split!r} that {technique.name!r} is evaluated on is empty; "
                          f"check that the data holds images of the held-out subclass(es) {list(config.heldout)}")
    metrics["heldout"] = {"split": technique.heldout_split, **metrics[technique.heldout_split]}
    return pd.concat(frames, ignore_index=True), metrics


def train_many(jobs: Iterable[str] | Mapping[str, Mapping[str, Any]], profile: str = "default",
               seeds: tuple[int, ...] | list[int] | None = None, progress: bool = True,
               **common: Any) -> dict[str, list[Path]]:
    """Train (or reuse) several techniques for every seed: {label: run folders, one per seed}.

    jobs: technique names, or {label: Config overrides including "technique"} (e.g. a stem variant of the
    baseline). common: overrides for all (data, runs, device, ...). Runs another process is training (a
    notebook running beside this one in a parallel study) are passed over on the first pass and waited for
    at the end, so this process trains what nobody trains yet instead of idling on a lock.
    """
    from .config import profile as make_profile

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
    from .config import profile as make_profile

    config, profile_seeds = make_profile(profile, technique=technique, **overrides)
    return [train(config.replace(seed=int(s)), progress=progress) for s in (seeds or profile_seeds)]
