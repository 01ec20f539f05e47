"""Seed 002 §3.4: two heads on shared features and three updates per batch (after Correa et al. 2021).

1. the subclass head minimises the subclass loss (features fixed);
2. the backbone and the generator head minimise the generator loss;
3. the backbone maximises the subclass loss (the heads do not move).

Each step has its own Adam optimiser over exactly the parameters it may change, so step 3 cannot touch a
head. Steps 1 and 2 share one forward pass (step 1 reads the features detached); step 3 needs a fresh
one, since step 2 changed the backbone.

`adv_weight` W sets how far step 3 moves the backbone: its optimiser's learning rate is W x lr (1.0: the
seed's, where all three steps use lr). Why the step size and not the loss: Adam divides each gradient by
its running RMS, so a loss multiplied by W gives the same steps (W = 1, 1.001 and 10 trained to weights that
differed only by float rounding); an Adam step is proportional to its learning rate, so W now trades step 3
against step 2 as a loss weight does under SGD (under `optimizer="sgd"` the two are the same). The other way
to give W an effect, folding step 3 into step 2 (one optimiser on gen_loss - W * sub_loss), would merge the
seed's steps 2 and 3 into gradient reversal, which is its own technique here; this keeps the three steps.
W = 0 turns step 3 off (a dual-head baseline whose subclass head only watches).
"""
import torch.nn.functional as F

from . import register
from .base import Technique
from ..errors import ConfigError


@register("adversarial_debiasing")
class AdversarialDebiasing(Technique):
    description = "dual head; per batch: subclass head min, backbone+generator head min, backbone max subclass loss (seed 002 §3.4)"
    defaults = {"adv_weight": 1.0}
    search_space = {"lr": ("log", 3e-4, 3e-3), "adv_weight": ("log", 0.1, 10.0)}  # step 3's learning rate, as a multiple of the config's lr
    dual_head = True

    def __init__(self, config, generators, subclasses):
        super().__init__(config, generators, subclasses)
        weight = self.hparams["adv_weight"]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise ConfigError(f"technique parameter 'adv_weight' of 'adversarial_debiasing' is {weight!r}; "
                              "it must be a number, 0 or more (1.0: seed 002's step 3; 0: no step 3)")
        self.split_optimizers()
        self.adversary_optimizer = self.make_optimizer(self.model.body_parameters(), lr=config.lr * float(weight))

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
        """Step 3: the backbone maximises the subclass loss; only `adversary_optimizer`'s parameters move, by
        steps of `adv_weight` x lr (its learning rate)."""
        loss = F.cross_entropy(self.model.subclass_logits(x), s)
        self.adversary_optimizer.zero_grad(set_to_none=True)
        (-loss).backward()
        self.model.subclass_head.zero_grad(set_to_none=True)
        self.adversary_optimizer.step()
        return loss.item()
