"""Gradient reversal (Ganin et al., JMLR 2016; Kim et al., "Learning Not to Learn", CVPR 2019).

One step per batch: the subclass head learns the subclass from the features through a layer that is the
identity forwards and multiplies the gradient by -lambda backwards, so the backbone unlearns what the head
learns. lambda follows Ganin's schedule 2 / (1 + exp(-10 p)) - 1 over training progress p (the engine's
`progress`: the share of training done at the end of the current epoch), times `grl_weight`;
`schedule=False` keeps it at `grl_weight`.
"""
import math

import torch
import torch.nn.functional as F

from . import register
from .base import Technique


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.weight * grad, None


def grad_reverse(x: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    return _ReverseGrad.apply(x, weight)


@register("gradient_reversal")
class GradientReversal(Technique):
    description = "subclass head through a gradient reversal layer, one step per batch (Ganin et al. 2016)"
    defaults = {"grl_weight": 1.0, "schedule": True}
    search_space = {"lr": ("log", 3e-4, 3e-3), "grl_weight": ("log", 0.1, 10.0)}
    dual_head = True

    @property
    def grl_lambda(self) -> float:
        if not self.hparams["schedule"]:
            return float(self.hparams["grl_weight"])
        return self.hparams["grl_weight"] * (2.0 / (1.0 + math.exp(-10.0 * self.progress)) - 1.0)

    def update(self, batch):
        feats = self.model.features(batch["x"])
        gen_loss = F.cross_entropy(self.model.generator_head(feats), batch["generator"])
        sub_loss = F.cross_entropy(self.model.subclass_head(grad_reverse(feats, self.grl_lambda)), batch["subclass"])
        self.optimizer.zero_grad(set_to_none=True)
        (gen_loss + sub_loss).backward()
        self.optimizer.step()
        return {"loss": gen_loss.item(), "subclass_loss": sub_loss.item(), "grl_lambda": self.grl_lambda}
