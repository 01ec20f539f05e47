"""Backbone weights from a local file only: loaded with `weights_only=True`, never from a hub.

Accepted: a state dict, or a dict holding one under "state_dict" or "model" (e.g. torchvision's
published files saved locally). Keys may carry a "net." / "backbone." / "module." prefix; the classifier
of the file ("fc.*") is dropped, since the heads of this study are its own.
"""
from __future__ import annotations

import os
from pathlib import Path

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


def load_local_weights(backbone: nn.Module, path: str | os.PathLike) -> nn.Module:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"pretrained weights {str(path)!r} do not exist; give a local .pt/.pth file "
                              "(nothing is downloaded) or leave 'pretrained' empty for random initialisation")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle payloads are refused here by weights_only=True
        raise CheckpointError(f"cannot load weights from {str(path)!r} safely: {err}") from None
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
