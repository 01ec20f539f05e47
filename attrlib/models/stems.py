"""Input front ends: the seeds' normalisation and optional high-pass residual stems.

Data reach the model in [0, 1] pixel space (so CAMs and adversarial perturbations live there); the stem
normalises (mean 0.5, std 0.5, seed 002 §3.1) and, optionally, keeps only the high-pass residual where
generator fingerprints live and image content mostly does not:

- `srm`: the three fixed SRM filters of the noise stream of Zhou et al. (CVPR 2018), each summed over the
  colour channels, as there.
- `srm_rgb`: the same three filters applied to each colour channel on its own (9 maps): summing over the
  channels, as Zhou et al. do, cancels what a generator does differently per channel (coupled or
  per-channel output noise); the steganalysis rich models filter each channel (Fridrich & Kodovsky 2012).
- `npr`: neighbouring-pixel relationships (Tan et al., CVPR 2024): x - nearest_up(nearest_down(x)).

Residuals are small; a BatchNorm rescales them for the backbone. The stem always runs in float32, also
under bf16 autocast: rounding a residual of a few grey levels to bf16's 8 bits of mantissa erases it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


class Normalize(nn.Module):
    """(x - mean) / std, per colour channel or for all: the seeds' mean 0.5 and std 0.5 ([0, 1] -> [-1, 1]) by
    default; a pretrained backbone's own (ImageNet's) when it names them (`input_mean`, `input_std`)."""

    def __init__(self, mean: float | tuple = 0.5, std: float | tuple = 0.5):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(-1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _srm_kernels() -> torch.Tensor:
    kv = torch.tensor([[-1, 2, -2, 2, -1],
                       [2, -6, 8, -6, 2],
                       [-2, 8, -12, 8, -2],
                       [2, -6, 8, -6, 2],
                       [-1, 2, -2, 2, -1]], dtype=torch.float32) / 12.0
    second = torch.zeros(5, 5)
    second[1:4, 1:4] = torch.tensor([[0, 0, 0], [1, -2, 1], [0, 0, 0]], dtype=torch.float32)
    second /= 2.0
    first = torch.zeros(5, 5)
    first[1:4, 1:4] = torch.tensor([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]], dtype=torch.float32)
    first /= 4.0
    # Zhou et al.: output channel k applies filter k to every colour channel and sums them.
    return torch.stack([kv, second, first]).unsqueeze(1).repeat(1, 3, 1, 1)  # (3 out, 3 in, 5, 5)


class SRMStem(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("weight", _srm_kernels(), persistent=False)
        self.norm = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.conv2d(x, self.weight, padding=2))


class SRMColourStem(nn.Module):
    """The SRM filters per colour channel: 3 filters x 3 channels = 9 residual maps, each normalised."""

    out_channels = 9

    def __init__(self):
        super().__init__()
        per = _srm_kernels()[:, :1]  # (3 filters, 1, 5, 5)
        self.register_buffer("weight", per.repeat(3, 1, 1, 1), persistent=False)  # (9, 1, 5, 5), grouped by channel
        self.norm = nn.BatchNorm2d(9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.conv2d(x, self.weight, padding=2, groups=3))


class NPRStem(nn.Module):
    def __init__(self, factor: int = 2):
        super().__init__()
        self.factor = factor
        self.norm = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        down = F.interpolate(x, scale_factor=1 / self.factor, mode="nearest")
        up = F.interpolate(down, size=x.shape[-2:], mode="nearest")
        return self.norm(x - up)


FILTERS = {"none": nn.Identity, "srm": SRMStem, "srm_rgb": SRMColourStem, "npr": NPRStem}


def stem_channels(kind: str) -> int:
    """The number of maps the stem `kind` gives the backbone."""
    if kind not in FILTERS:
        raise ConfigError(f"unknown stem {kind!r}; valid choices: {', '.join(FILTERS)}")
    return getattr(FILTERS[kind], "out_channels", 3)


class Stem(nn.Module):
    """Normalisation, then the chosen residual filter (or none); float32 whatever the autocast state."""

    def __init__(self, kind: str = "none", mean: float | tuple = 0.5, std: float | tuple = 0.5):
        super().__init__()

        self.out_channels = stem_channels(kind)
        self.kind = kind
        self.normalize = Normalize(mean, std)
        self.filter = FILTERS[kind]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.filter(self.normalize(x.float()))
