"""Seed 000 §1, §3: erase subclass evidence from each test image with a bounded attack, then attribute.

Seed 000 attacks an ImageNet classifier; nothing is downloaded here, so a subclass classifier of the same
architecture is trained beside the attribution model on the training subclasses (our choice). At test
time captum's PGD (L-inf ball of radius `eps` in [0, 1] pixel space, `attack_steps` signed-gradient steps of
`step_size`, no random start, so it is deterministic) moves each image towards a uniform subclass
prediction (a targeted attack on the confusion loss), and the attribution model, trained as the
baseline, classifies the perturbed image. Per-epoch validation uses clean images to keep training cheap.
"""
import warnings

import torch
import torch.nn.functional as F
from captum.robust import PGD

from ..models import build_model
from . import register
from .base import Technique


def _to_uniform(logits, _target):
    return -F.log_softmax(logits, dim=1).mean(dim=1)  # per image, as captum expects


@register("runtime_adversarial")
class RuntimeAdversarial(Technique):
    description = "test-time PGD (captum) against a subclass classifier erases subclass evidence, then attribution (seed 000)"
    # `attack_steps`, not `steps`: a technique's `steps` is its optimiser budget (base.Technique.steps), and
    # until issue 11 the attack's 5 steps were read as that budget, so this model trained for 5 steps only
    defaults = {"eps": 4 / 255, "step_size": 1 / 255, "attack_steps": 5}
    search_space = {"lr": ("log", 3e-4, 3e-3)}  # the attack's radius is studied by its sweep, not searched

    def __init__(self, config, generators, subclasses):
        super().__init__(config, generators, subclasses)
        self.subclass_model = build_model(config, self.n_subclasses)
        self.subclass_optimizer = self.make_optimizer(self.subclass_model.parameters())

    def update(self, batch):
        stats = super().update(batch)
        sub_loss = F.cross_entropy(self.subclass_model(batch["x"]), batch["subclass"])
        self.subclass_optimizer.zero_grad(set_to_none=True)
        sub_loss.backward()
        self.subclass_optimizer.step()
        return {**stats, "subclass_loss": sub_loss.item()}

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hparams
        attack = PGD(self.subclass_model, loss_func=_to_uniform, lower_bound=0.0, upper_bound=1.0)
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
            x_adv = attack.perturb(x.detach().clone().requires_grad_(True), radius=h["eps"], step_size=h["step_size"],
                                   step_num=int(h["attack_steps"]), target=None, targeted=True)
        self.subclass_model.zero_grad(set_to_none=True)
        return x_adv.detach()

    def test_inputs(self, x):
        return self.perturb(x)
