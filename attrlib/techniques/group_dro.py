"""Group DRO (Sagawa et al., ICLR 2020) over generator x subclass groups, as DomainBed's `GroupDRO`.

Group weights q follow exponentiated gradient ascent on the group losses, q_g <- q_g * exp(eta * loss_g),
renormalised; the model minimises the q-weighted loss, so the worst cells get the most weight. eta = 0.01
is DomainBed's default; Sagawa's group adjustments and strong L2 are not used (our choice: one change at
a time against the baseline).

The groups are the generator x subclass cells that have training images: q starts uniform over them and an
empty cell (27 of the embedded benchmark's 42) never holds mass. The engine shows a technique its training
frame once, before the first step, through `sampler_weights` (a resumed run's checkpoint restores q after
it); group DRO samples as ERM does and takes the cells from that frame. The history logs q as one column
per cell, `q/<generator>|<subclass>`: each epoch's mean over its steps, which sums to 1 like q itself.
"""
import numpy as np
import torch
import torch.nn.functional as F

from . import register
from .base import Technique


@register("group_dro")
class GroupDRO(Technique):
    description = "Group DRO over generator x subclass groups (Sagawa et al. 2020)"
    defaults = {"eta": 0.01}
    search_space = {"lr": ("log", 3e-4, 3e-3), "eta": ("log", 1e-3, 1e-1)}

    def __init__(self, config, generators, subclasses):
        super().__init__(config, generators, subclasses)
        # uniform over every cell until the training frame says which have images (sampler_weights)
        self.register_buffer("q", torch.ones(self.n_groups) / self.n_groups)
        self.names = [f"q/{g}|{s}" for g in self.generators for s in self.subclasses]  # by group index
        self.cells: list[int] | None = None  # the groups with training images, once sampler_weights has seen them

    def sampler_weights(self, frame):
        """No reweighting (shuffled, as ERM); q's mass goes to the cells `frame` (the training split) has."""
        groups = self.group_of(frame)
        present = np.unique(groups[groups >= 0])
        if len(present):
            q = torch.zeros_like(self.q)
            q[torch.as_tensor(present)] = 1.0 / len(present)
            self.q.copy_(q)
            self.cells = present.tolist()
        return None

    def loss(self, batch):
        losses = F.cross_entropy(self.model(batch["x"]), batch["generator"], reduction="none")
        groups = batch["group"]
        present = torch.unique(groups[groups >= 0])
        group_loss = torch.stack([losses[groups == g].mean() for g in present])
        with torch.no_grad():
            self.q[present] *= torch.exp(self.hparams["eta"] * group_loss.detach())
            self.q /= self.q.sum()
        return (self.q[present] * group_loss).sum()

    def update(self, batch):
        stats = super().update(batch)
        q = self.q.detach().cpu().tolist()
        # the cells with images (a q that underflows to 0 stays in the history); for a technique restored
        # from a checkpoint without the engine, the groups q weights
        cells = self.cells if self.cells is not None else [g for g, w in enumerate(q) if w > 0]
        return {**stats, **{self.names[g]: q[g] for g in cells}}
