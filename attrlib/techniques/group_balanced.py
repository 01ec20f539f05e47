"""Group-balanced sampling (BalancingGroups' SUBG/RWG, WILDS): uniform over generator x subclass cells.

Pr(i) = 1 / (G * N_g(i)), G the number of non-empty cells, N_g the cell's size. Seed 002's bias is a
confounding of generator and subclass, so balancing the cells, not only the generators, is the natural
next step after §3.2.
"""
import numpy as np

from . import register
from .base import Technique


def cell_balanced_weights(groups: np.ndarray) -> np.ndarray:
    """Per-row weights 1 / (G * N_g) of rows in cells `groups` (G non-empty cells of N_g rows each): every
    cell weighs 1 / G in total. Also the weights dfr fits its head with."""
    values, counts = np.unique(groups, return_counts=True)
    size = dict(zip(values.tolist(), counts.tolist()))
    return np.array([1.0 / (len(values) * size[g]) for g in np.asarray(groups).tolist()])


@register("group_balanced")
class GroupBalanced(Technique):
    description = "sampler uniform over generator x subclass cells (BalancingGroups / WILDS)"

    def sampler_weights(self, frame):
        return cell_balanced_weights(self.group_of(frame))
