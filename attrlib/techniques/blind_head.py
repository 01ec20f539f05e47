"""Seed 000 §3: a dual-head model whose second head makes the subclass unreadable from the features.

As in Alvi et al. ("Turning a Blind Eye", ECCV-W 2018), which seed 000's "head that encourages
misclassification of subclasses" describes: per batch the subclass head learns to read the subclass from
the (detached) features, and the backbone with the generator head minimises the generator loss plus
`confusion_weight` times the cross entropy of that head's output towards the uniform distribution.
Unlike seed 002's maximisation this loss is bounded (its minimum is log(n_subclasses)).
"""
import torch.nn.functional as F

from . import register
from .base import Technique, confusion_loss


@register("blind_head")
class BlindHead(Technique):
    description = "dual head; backbone trained so the subclass head is confused towards uniform (seed 000 §3)"
    defaults = {"confusion_weight": 1.0}
    search_space = {"lr": ("log", 3e-4, 3e-3), "confusion_weight": ("log", 0.1, 10.0)}
    dual_head = True

    def __init__(self, config, generators, subclasses):
        super().__init__(config, generators, subclasses)
        self.split_optimizers()

    def update(self, batch):
        feats = self.model.features(batch["x"])
        gen_loss = F.cross_entropy(self.model.generator_head(feats), batch["generator"])
        conf = confusion_loss(self.model.subclass_head(feats))
        self.optimizer.zero_grad(set_to_none=True)
        (gen_loss + self.hparams["confusion_weight"] * conf).backward()
        self.optimizer.step()
        sub_loss = F.cross_entropy(self.model.subclass_head(feats.detach()), batch["subclass"])
        self.subclass_optimizer.zero_grad(set_to_none=True)
        sub_loss.backward()
        self.subclass_optimizer.step()
        return {"loss": gen_loss.item(), "confusion_loss": conf.item(), "subclass_loss": sub_loss.item()}
