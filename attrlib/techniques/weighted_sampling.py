"""Seed 002 §3.2: the baseline with a class-balancing sampler, Pr(i) = 1 / (K * C_i), with replacement.

K is the number of generators, C_i the number of training images of image i's generator, so every
generator is drawn equally often in expectation.
"""

from . import register
from .base import Technique


@register("weighted_sampling")
class WeightedSampling(Technique):
    description = "baseline with a sampler Pr(i) = 1/(K*C_i), with replacement (seed 002 §3.2)"

    def sampler_weights(self, frame):
        counts = frame["generator"].map(frame["generator"].value_counts()).to_numpy(dtype=float)
        return 1.0 / (self.n_generators * counts)
