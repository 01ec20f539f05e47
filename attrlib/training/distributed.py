"""Several processes training one run (`torchrun --nproc_per_node=N -m attrlib train ...`).

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; with WORLD_SIZE > 1 the engine joins a process group
(gloo on the CPU, nccl on CUDA), every rank draws a disjoint share of each epoch's sample, gradients are
averaged over ranks before every optimiser step (what DistributedDataParallel's reducer does, done per
optimiser so that every technique, whatever it calls on its model, stays one file), BatchNorm statistics
are averaged after each epoch, and only rank 0 evaluates and writes files.

Without WORLD_SIZE (or with 1) every function here is a no-op and the engine is a single process.
"""
from __future__ import annotations

import math
import os
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def setup(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun describes (env://) once; (rank, world size)."""
    size = int(os.environ.get("WORLD_SIZE", 1))
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return world()


def local_device(device: torch.device) -> torch.device:
    """cuda:<LOCAL_RANK> for a CUDA run under torchrun, else `device` unchanged."""
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        index = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return device


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def gather(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (a collective: every rank calls it); [obj] alone."""
    if world()[1] <= 1:
        return [obj]
    out = [None] * world()[1]
    dist.all_gather_object(out, obj)
    return out


def broadcast_state(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (same start, even if a rank's init differed)."""
    if world()[1] > 1:
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def average_buffers(module: torch.nn.Module) -> None:
    """Mean of floating buffers (BatchNorm running statistics, group weights) over ranks."""
    size = world()[1]
    if size > 1:
        for b in module.buffers():
            if b.is_floating_point():
                dist.all_reduce(b.data)
                b.data /= size


def average_gradients_before_step(optimizers: dict[str, torch.optim.Optimizer]) -> list:
    """Register on each optimiser a pre-step hook that all-reduces (mean) its parameters' gradients."""
    size = world()[1]
    if size <= 1:
        return []

    def hook(optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])  # one collective per step, as DDP's buckets
        dist.all_reduce(flat)
        flat /= size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    return [opt.register_step_pre_hook(hook) for opt in optimizers.values()]


class EpochSampler(Sampler[int]):
    """Each rank's disjoint share of one epoch's sample, the same on every rank for a given (seed, epoch).

    weights=None: a permutation (DistributedSampler's shuffle); otherwise len(weights) draws with
    replacement, Pr(i) proportional to weights[i] (WeightedRandomSampler's). The sample is padded to a
    multiple of the world size by repeating its head, and rank r takes positions r, r + N, r + 2N, ...
    Call `set_epoch(epoch)` before each epoch; the engine does.
    """

    def __init__(self, n: int, weights=None, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.rank, self.world_size = int(n), int(seed), int(rank), int(world_size)
        self.weights = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=float), dtype=torch.double)
        self.epoch = 0
        self.per_rank = math.ceil(self.n / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def sample(self) -> torch.Tensor:
        """The whole epoch's sample (all ranks), before it is dealt out."""
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        if self.weights is None:
            idx = torch.randperm(self.n, generator=g)
        else:
            idx = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        total = self.per_rank * self.world_size
        if total > len(idx):
            idx = torch.cat([idx, idx[: total - len(idx)]])
        return idx

    def __iter__(self) -> Iterator[int]:
        return iter(self.sample()[self.rank::self.world_size].tolist())

    def __len__(self) -> int:
        return self.per_rank
