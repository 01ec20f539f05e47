"""Backbone weights from a local file only: loaded with `weights_only=True`, never from a hub.

Accepted: a state dict, or a dict holding one under "state_dict" or "model" (e.g. torchvision's
published files saved locally). Keys may carry a "net." / "backbone." / "module." prefix; the classifier
of the file ("fc.*") is dropped, since the heads of this study are its own.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError

_PREFIXES = ("module.", "backbone.", "net.")


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def safe_load(path: str | os.PathLike, what: str, advice: str) -> Any:
    """`torch.load(path, weights_only=True)` with errors a user can act on.

    weights_only=True unpickles tensors and plain containers only: a file whose pickle asks to build any
    other object (a `__reduce__` payload that would run code) is refused before anything of it runs.
    `what` names the file in messages ("pretrained weights", "checkpoint"); `advice` says what to do.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is long and explains how to bypass the check; keep only what the pickle asked for
        found = re.search(r"(?:Unsupported global|Unsupported operand)[^\n]*", re.sub(r"\x1b\[[0-9;]*m", "", str(err)))
        asked = re.split(r" (?:which is not|was not) ", found.group(0))[0].strip() if found else "other objects"
        asked = asked.replace("Unsupported global: GLOBAL ", "the global ")
        raise CheckpointError(
            f"{what} {str(path)!r} cannot be loaded safely and was refused: its pickle asks for "
            f"{asked[:160]}, not only tensors and plain containers; nothing of it was run (weights_only=True). "
            f"Do not load files from untrusted sources; {advice}") from None
    except FileNotFoundError:
        raise CheckpointError(f"{what} {str(path)!r} does not exist; {advice}") from None
    except Exception as err:  # truncated zip, not a torch file at all, ...
        raise CheckpointError(f"{what} {str(path)!r} cannot be read ({type(err).__name__}: "
                              f"{str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}); {advice}") from None


def load_local_weights(backbone: nn.Module, path: str | os.PathLike) -> nn.Module:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"pretrained weights {str(path)!r} do not exist; give a local .pt/.pth file "
                              "(nothing is downloaded) or leave 'pretrained' empty for random initialisation")
    state = safe_load(path, "pretrained weights",
                      "give a file holding only a state dict (model.state_dict() saved with torch), or leave 'pretrained' empty")
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"{str(path)!r} holds a {type(state).__name__}, not a state dict")
    own = {_strip(k): k for k in backbone.state_dict()}
    mapped = {own[_strip(k)]: v for k, v in state.items() if _strip(k) in own}
    if not mapped:
        raise CheckpointError(f"no parameter of {str(path)!r} matches the backbone; is it the right architecture?")
    try:
        backbone.load_state_dict(mapped, strict=False)
    except RuntimeError as err:
        raise CheckpointError(f"weights in {str(path)!r} do not fit the backbone: {err}") from None
    return backbone
