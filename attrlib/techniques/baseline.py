"""Seed 002 §3.1: a single-head CNN, cross entropy on the generator, Adam lr 1e-3 (the config's optimiser)."""
from . import register
from .base import Technique


@register("baseline")
class Baseline(Technique):
    description = "single head, cross entropy, Adam lr 1e-3 (seed 002 §3.1)"
