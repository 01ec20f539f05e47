"""Fingerprint on every content: training images whose content comes from one subclass and whose
generator trace comes from another image (RepMix, Bui et al., ECCV 2022; re-imprinting traces on shared
content, POSE, Yang et al., CVPR 2023).

Each training crop is, with probability `mix_prob`, replaced by the low-pass band of a partner crop of
ANOTHER subclass (a Gaussian blur of width `sigma` px) plus its own high-pass band (itself minus that blur);
the label stays its own generator. The generator is then seen on the content of every subclass in the batch,
and the content's low frequencies stop predicting the label. Partners are drawn by a random permutation of
the batch; a crop whose partner shares its subclass is left as it is.

Adapted: RepMix mixes whole images at the pixel level and POSE learns to synthesise new traces; this is the
simplest transplant of a residual, and our simulator adds its fingerprint to the content (`attrlib.simulator`),
which favours it by construction: notebook 11 checks it on the benchmark variant whose trace is not additive.
`sigma` is searched on the validation subclass (`search_space`); the default, 1 px, is the scale of the
forensic residual filters (SRM, NPR), not a choice made on any held-out subclass.
"""
import math

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from . import register
from .base import Technique


def split_bands(x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) with low = Gaussian blur of width `sigma` px (reflect padding) and high = x - low."""
    k = 2 * math.ceil(3 * sigma) + 1
    low = TF.gaussian_blur(x, [k, k], [sigma, sigma])
    return low, x - low


def transplant(x: torch.Tensor, subclass: torch.Tensor, mix_prob: float, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch with, per crop and with probability `mix_prob`, the low band of a partner of another subclass
    under its own high band; and the boolean mask of the crops that were mixed. Draws from torch's global RNG."""
    n = x.shape[0]
    partner = torch.randperm(n, device=x.device)
    mixed = (torch.rand(n, device=x.device) < mix_prob) & (subclass[partner] != subclass)
    if not bool(mixed.any()):
        return x, mixed
    low, high = split_bands(x, sigma)
    out = torch.where(mixed.view(-1, 1, 1, 1), (low[partner] + high).clamp(0.0, 1.0), x)
    return out, mixed


@register("residual_mix")
class ResidualMix(Technique):
    description = "a crop's high-pass trace on another subclass's low-pass content, its own label (RepMix / POSE)"
    defaults = {"mix_prob": 0.5, "sigma": 1.0}
    search_space = {"lr": ("log", 3e-4, 3e-3), "mix_prob": ("uniform", 0.25, 1.0), "sigma": ("log", 0.6, 3.0)}

    def loss(self, batch):
        x, mixed = transplant(batch["x"], batch["subclass"], float(self.hparams["mix_prob"]),
                              float(self.hparams["sigma"]))
        self.mixed_share = float(mixed.float().mean())
        return F.cross_entropy(self.model(x), batch["generator"])

    def update(self, batch):
        stats = super().update(batch)
        return {**stats, "mixed_share": self.mixed_share}
