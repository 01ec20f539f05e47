"""Group-balanced sampling (BalancingGroups' SUBG/RWG, WILDS): uniform over generator x subclass cells.

Pr(i) = 1 / (G * N_g(i)), G the number of non-empty cells, N_g the cell's size. Seed 002's bias is a
confounding of generator and subclass, so balancing the cells, not only the generators, is the natural
next step after §3.2.
"""
import numpy as np

from . import register
from .base import Technique


@register("group_balanced")
class GroupBalanced(Technique):
    description = "sampler uniform over generator x subclass cells (BalancingGroups / WILDS)"

    def sampler_weights(self, frame):
        groups = self.group_of(frame)
        values, counts = np.unique(groups, return_counts=True)
        size = dict(zip(values.tolist(), counts.tolist()))
        return np.array([1.0 / (len(values) * size[g]) for g in groups.tolist()])
