"""Techniques by name. One module per technique; `@register("name")` on its class is all it takes.

Every module of this package is imported here, so a new technique is one new file.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..errors import ConfigError
from .base import Technique, image_logits, image_starts, per_image, predict_log_probs, predict_probs

REGISTRY: dict[str, type[Technique]] = {}


def register(name: str):
    def add(cls: type[Technique]) -> type[Technique]:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"technique {name!r} is registered twice ({REGISTRY[name].__module__}, {cls.__module__})")
        cls.name = name
        REGISTRY[name] = cls
        return cls
    return add


def get(name: str) -> type[Technique]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown technique {name!r}; valid techniques: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def available(references: bool = False) -> dict[str, str]:
    """name -> one-line description, in registration order: the techniques a study compares; references=True
    adds the references assembled from cross-fitted fold runs (`target_reference`: no single model to inspect,
    so the notebooks that inspect every technique leave it out and notebooks 10-11 train it as a reference). An
    assembled technique (`ensemble`: an average of other runs, named by notebook 11) is never listed."""
    return {name: cls.description for name, cls in REGISTRY.items()
            if (references or not cls.cross_fit) and not cls.assembled}


def build_technique(config, data) -> Technique:
    """The technique `config.technique` names, with its model, for `data.generators` and `data.subclasses`."""
    return get(config.technique)(config, data.generators, data.subclasses)


# The seeds' techniques first, then the literature's, in the order the notebooks present them.
ORDER = ("baseline", "weighted_sampling", "fine_tuning", "adversarial_debiasing", "blind_head",
         "runtime_adversarial", "group_balanced", "group_dro", "gradient_reversal")
for _name in ORDER:
    importlib.import_module(f"{__name__}.{_name}")
for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in ("base", *ORDER):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["REGISTRY", "Technique", "image_logits", "image_starts", "per_image", "predict_log_probs", "predict_probs", "available", "build_technique", "get", "register"]
