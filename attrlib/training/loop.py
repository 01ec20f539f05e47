"""The loop's parts, plain functions with explicit arguments (torchvision's reference `train_one_epoch`)."""
from __future__ import annotations

import itertools
import random
import time
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler

from ..config import Config
from ..data import ImageDataset, StudyData, build_augment, collate_patches
from ..errors import ConfigError
from ..progress import bar as progress_bar
from . import distributed


def pick_device(name: str = "auto") -> torch.device:
    """cuda, then mps, then cpu for "auto"; a named device that is not there is an error, not a fallback."""
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if available[d]))
    if not available.get(name, False):
        raise ConfigError(f"device {name!r} is not available here; valid choices: auto, "
                          + ", ".join(k for k, ok in available.items() if ok))
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_loader(frame: pd.DataFrame, data: StudyData, config: Config, train: bool, sampler_weights=None,
                generator: torch.Generator | None = None, device: torch.device | None = None,
                progress: bool | None = False, batch_size: int | None = None) -> DataLoader:
    """A training loader (shuffled, or drawn with replacement by `sampler_weights(frame)` when that gives
    weights) or an evaluation loader (in order, twice the batch size). Under the crop policy an image larger
    than the crop gives up to `config.train_patches` random crops to train and a grid of up to
    `config.test_patches` crops to evaluate (`collate_patches`: a batch of `batch_size` images); training images
    are augmented as `config.augment` says (`attrlib.data.augment`). `batch_size`:
    the training batch when it is not `config.batch_size` (a technique's own, `Technique.batch_size`)."""
    batch_size = config.batch_size if batch_size is None else batch_size
    dataset = ImageDataset(frame, data, policy=config.input_policy, size=config.image_size, train=train, progress=progress,
                           patches=config.train_patches if train else config.test_patches,
                           augment=build_augment(config.augment, config.augment_prob) if train else None)
    common = dict(num_workers=config.num_workers, pin_memory=device is not None and device.type == "cuda",
                  persistent_workers=config.num_workers > 0, collate_fn=collate_patches)
    if not train:
        return DataLoader(dataset, batch_size=2 * batch_size, shuffle=False, **common)
    weights = sampler_weights(dataset.frame) if sampler_weights is not None else None
    rank, world_size = distributed.world()
    if world_size > 1:  # under torchrun
        # each rank draws a disjoint share of the epoch's (weighted) sample; the engine calls set_epoch
        sampler = distributed.EpochSampler(len(dataset), weights, seed=config.seed, rank=rank, world_size=world_size)
        # batch_size is the global batch: N ranks take steps of batch_size / N each, so a run does the
        # same number of steps of the same size whatever N (the same run id, the same metrics in expectation)
        return DataLoader(dataset, batch_size=-(-batch_size // world_size), sampler=sampler, **common)
    if weights is not None:
        # with replacement, as many draws as images: one epoch is still len(frame) images (seed 002 §3.2)
        sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples=len(dataset),
                                        replacement=True, generator=generator)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, **common)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def train_one_epoch(technique, loader: DataLoader, device: torch.device, epoch: int, epochs: int,
                    progress: bool = True, max_steps: int | None = None) -> dict[str, float]:
    """One pass over `loader` with `technique.update` (the first `max_steps` batches, when given: the last
    epoch of a step budget); the image-weighted mean of every statistic it returns, and `steps`."""
    technique.train()
    sums: dict[str, float] = defaultdict(float)
    seen = steps = 0
    start = time.perf_counter()
    total = len(loader) if max_steps is None else min(len(loader), max_steps)
    # islice stops before fetching a batch past the budget (a decoded batch of large images is not free)
    bar = progress_bar(itertools.islice(loader, total), progress, desc=f"{technique.name} epoch {epoch + 1}/{epochs}",
                       leave=False, total=total)
    for batch in bar:
        batch = _to_device(batch, device)
        stats = technique.update(batch)
        n = int(batch["owner"][-1]) + 1 if "owner" in batch else int(batch["x"].shape[0])  # images, not patches
        for k, v in stats.items():
            sums[k] += float(v) * n
        seen += n
        steps += 1
        bar.set_postfix(loss=f"{stats.get('loss', float('nan')):.3f}", refresh=False)
    seconds = time.perf_counter() - start
    out = {k: v / max(seen, 1) for k, v in sums.items()}
    out.update(steps=steps, images=seen, seconds=round(seconds, 3), images_per_second=round(seen / max(seconds, 1e-9), 1))
    return out
