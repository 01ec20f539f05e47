"""Seed 002 §3.3: start from a finished baseline run, train only the classification layer on 80 % of the
held-out subclass (`ft_train`), SGD lr 1e-3 momentum 0.9, 75 epochs; report on the other 20 % (`ft_test`).

The seed fine-tunes "using the same training parameters as the other models", whose batch is 4 (§3.1), so
this technique keeps its own batch of 4 whatever the profile's, and its own budget in steps: the seed's
75 epochs of 143 images at batch 4 are 75 x ceil(143 / 4) = 75 x 36 = 2,700 SGD steps. On the default
benchmark's 140 `ft_train` images (35 steps an epoch) that is 77 epochs and 5 steps. (Before: 375 steps
at the profile's batch of 32, 75 epochs of 5 steps, a seventh of the seed's steps for the same images.)

It trains on a split of the target subclass, so every table flags it (`uses_target_data`): an upper
reference, not a competitor. The engine loads the baseline's trained weights into it (`starts_from`); the
backbone stays frozen in eval mode (its BatchNorm statistics too).
"""
import torch

from . import register
from .base import Technique


@register("fine_tuning")
class FineTuning(Technique):
    description = "baseline's classification layer re-trained on 80% of the held-out subclass; uses target data (seed 002 §3.3)"
    defaults = {"steps": 2700, "batch_size": 4, "lr": 1e-3, "momentum": 0.9}  # seed 002's steps, batch, SGD
    search_space = {"lr": ("log", 1e-4, 1e-2)}  # its own SGD's rate (the baseline it starts from is not searched)
    train_split = "ft_train"
    heldout_split = "ft_test"
    starts_from = "baseline"

    def __init__(self, config, generators, subclasses):
        super().__init__(config, generators, subclasses)
        for p in self.model.body_parameters():
            p.requires_grad_(False)
        self.optimizer = torch.optim.SGD(self.model.generator_head.parameters(), lr=self.hparams["lr"],
                                         momentum=self.hparams["momentum"])

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.stem.eval()
        self.model.backbone.eval()
        return self

    def loss(self, batch):
        with torch.no_grad():
            feats = self.model.features(batch["x"])
        return torch.nn.functional.cross_entropy(self.model.generator_head(feats), batch["generator"])
