"""What a run needs to resume exactly where it stopped: the technique (models and buffers), every
optimiser it owns, and the random states (Python, NumPy, torch and the loader's generator) of every
process. One reproducibility scheme for one process and for torchrun alike: the states are saved after each
epoch and restored on resume, so a resumed run draws what an uninterrupted run would (on the CPU).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import runfolder
from ..errors import CheckpointError
from . import distributed


def rng_state(loader_generator: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"python": random.getstate(), "torch": torch.get_rng_state(), "loader": loader_generator.get_state(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}


def set_rng_state(state: dict[str, Any], loader_generator: torch.Generator) -> None:
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    torch.set_rng_state(state["torch"])
    loader_generator.set_state(state["loader"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))


def checkpoint_state(technique, epoch: int, loader_generator: torch.Generator) -> dict[str, Any]:
    """The checkpoint of the last finished epoch (0-based). Under torchrun every rank must call it (the
    random states of all ranks are gathered); only rank 0's result is written."""
    return {
        "epoch": epoch,
        "technique": technique.state_dict(),
        "optimizers": {k: opt.state_dict() for k, opt in technique.optimizers().items()},
        "rng": distributed.gather(rng_state(loader_generator)),  # one entry per rank
    }


def load_checkpoint(run: Path, technique, loader_generator: torch.Generator) -> int:
    """Restore a technique (model, optimisers, buffers) and this rank's random states from the checkpoint of
    the run folder `run` (written by `attrlib.runfolder.write_checkpoint`); returns the next epoch."""
    advice = "delete the file to train this run from the start"
    path = Path(run) / runfolder.CHECKPOINT
    ckpt = runfolder.read_checkpoint(run, "checkpoint", advice)  # a pickle payload is refused before anything runs
    rank, world_size = distributed.world()
    written_by = len(ckpt.get("rng", ())) if isinstance(ckpt, dict) else 0
    if written_by != world_size:
        raise CheckpointError(f"cannot resume from {str(path)!r}: it holds the random states of {written_by} "
                              f"process(es) and this run has {world_size}; resume with {written_by} process(es), "
                              f"or {advice}")
    try:
        technique.load_state_dict(ckpt["technique"])
        for k, opt in technique.optimizers().items():
            opt.load_state_dict(ckpt["optimizers"][k])
        set_rng_state(ckpt["rng"][rank], loader_generator)
    except Exception as err:
        raise CheckpointError(f"cannot resume from {str(path)!r}: {type(err).__name__}: {err}; {advice}") from None
    return int(ckpt["epoch"]) + 1
