"""Group DRO (Sagawa et al., ICLR 2020) over generator x subclass groups, as DomainBed's `GroupDRO`.

Group weights q follow exponentiated gradient ascent on the group losses, q_g <- q_g * exp(eta * loss_g),
renormalised; the model minimises the q-weighted loss, so the worst cells get the most weight. eta = 0.01
is DomainBed's default; Sagawa's group adjustments and strong L2 are not used (our choice: one change at
a time against the baseline).
"""
import torch
import torch.nn.functional as F

from . import register
from .base import Technique


@register("group_dro")
class GroupDRO(Technique):
    description = "Group DRO over generator x subclass groups (Sagawa et al. 2020)"
    defaults = {"eta": 0.01}

    def __init__(self, config, generators, subclasses):
        super().__init__(config, generators, subclasses)
        self.register_buffer("q", torch.ones(self.n_groups) / self.n_groups)

    def loss(self, batch):
        losses = F.cross_entropy(self.model(batch["x"]), batch["generator"], reduction="none")
        groups = batch["group"]
        present = torch.unique(groups[groups >= 0])
        group_loss = torch.stack([losses[groups == g].mean() for g in present])
        with torch.no_grad():
            self.q[present] *= torch.exp(self.hparams["eta"] * group_loss.detach())
            self.q /= self.q.sum()
        return (self.q[present] * group_loss).sum()
