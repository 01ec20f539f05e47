"""Seed 002 §3.4: two heads on shared features and three updates per batch (after Correa et al. 2021).

1. the subclass head minimises the subclass loss (features fixed);
2. the backbone and the generator head minimise the generator loss;
3. the backbone maximises the subclass loss (the heads do not move).

Each step has its own Adam optimiser over exactly the parameters it may change, so step 3 cannot touch a
head. Steps 1 and 2 share one forward pass (step 1 reads the features detached); step 3 needs a fresh
one, since step 2 changed the backbone. `adv_weight` scales step 3's loss (1.0: the seed's).
"""
import torch.nn.functional as F

from . import register
from .base import Technique


@register("adversarial_debiasing")
class AdversarialDebiasing(Technique):
    description = "dual head; per batch: subclass head min, backbone+generator head min, backbone max subclass loss (seed 002 §3.4)"
    defaults = {"adv_weight": 1.0}
    dual_head = True

    def __init__(self, config, generators, subclasses):
        super().__init__(config, generators, subclasses)
        self.split_optimizers()
        self.adversary_optimizer = self.make_optimizer(self.model.body_parameters())

    def update(self, batch):
        x, y, s = batch["x"], batch["generator"], batch["subclass"]
        feats = self.model.features(x)
        # 1. subclass head minimises the subclass loss
        sub_loss = F.cross_entropy(self.model.subclass_head(feats.detach()), s)
        self.subclass_optimizer.zero_grad(set_to_none=True)
        sub_loss.backward()
        self.subclass_optimizer.step()
        # 2. backbone + generator head minimise the generator loss
        gen_loss = F.cross_entropy(self.model.generator_head(feats), y)
        self.optimizer.zero_grad(set_to_none=True)
        gen_loss.backward()
        self.optimizer.step()
        adv_loss = self.adversary_step(x, s)
        return {"loss": gen_loss.item(), "subclass_loss": sub_loss.item(), "adversary_subclass_loss": adv_loss}

    def adversary_step(self, x, s) -> float:
        """Step 3: the backbone maximises the subclass loss; only `adversary_optimizer`'s parameters move."""
        loss = F.cross_entropy(self.model.subclass_logits(x), s)
        self.adversary_optimizer.zero_grad(set_to_none=True)
        (-self.hparams["adv_weight"] * loss).backward()
        self.model.subclass_head.zero_grad(set_to_none=True)
        self.adversary_optimizer.step()
        return loss.item()
