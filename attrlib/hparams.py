"""Hyper-parameter search spaces and random draws (DomainBed's `hparams_registry`, one space per technique).

A technique declares the ranges of what it is sensitive to in its own module (`search_space`, next to its
`defaults`), for example

    search_space = {"lr": ("log", 3e-4, 3e-3), "adv_weight": ("log", 0.1, 10.0)}

where a name is a Config field (`lr`, `weight_decay`, `batch_size`) or one of the technique's own
`defaults`, and a range is ("log", low, high), ("uniform", low, high), ("int", low, high) or
("choice", [values]). `draw(cls, 0)` is the defaults themselves (the seeds' and ours: no override), draws
1, 2, ... are random and a pure function of (technique name, draw): every machine and every rotation
searches the same points. The sweep (`attrlib.sweep.search`) trains the draws and keeps the best by the
run's model-selection rule, never by the test set.
"""
from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from .config import Config
from .errors import ConfigError

KINDS = ("log", "uniform", "int", "choice")
CONFIG_FIELDS = {f for f in Config.__dataclass_fields__}


def check_space(cls) -> None:
    """Every name of a technique's search space is a Config field or one of its defaults, every range valid."""
    for name, spec in cls.search_space.items():
        if name not in CONFIG_FIELDS and name not in cls.defaults:
            raise ConfigError(f"technique {cls.name!r} searches {name!r}, which is neither a Config field nor one "
                              f"of its defaults ({sorted(cls.defaults)})")
        if not isinstance(spec, tuple) or not spec or spec[0] not in KINDS:
            raise ConfigError(f"search range of {cls.name}.{name} is {spec!r}; use one of {KINDS} as its first item")


def draw(cls, index: int) -> dict[str, Any]:
    """Config overrides of draw `index` for technique class `cls` ({} for draw 0: the defaults)."""
    if index < 0:
        raise ConfigError(f"draw {index} must be 0 or more")
    if index == 0 or not cls.search_space:
        return {}
    check_space(cls)
    rng = np.random.default_rng([zlib.crc32(cls.name.encode()), int(index)])
    overrides: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for name, spec in sorted(cls.search_space.items()):
        value = _sample(spec, rng)
        (overrides if name in CONFIG_FIELDS and name not in cls.defaults else params)[name] = value
    if params:
        overrides["technique_params"] = params
    return overrides


def _sample(spec: tuple, rng: np.random.Generator) -> Any:
    kind, *args = spec
    if kind == "log":
        low, high = args
        return float(round(math.exp(rng.uniform(math.log(low), math.log(high))), 6))
    if kind == "uniform":
        low, high = args
        return float(round(rng.uniform(low, high), 6))
    if kind == "int":
        low, high = args
        return int(rng.integers(low, high + 1))
    values = list(args[0])
    return values[int(rng.integers(len(values)))]
