"""Backbones by name: a compact CPU default, and torchvision's ResNet-18 (seed 000) and ResNet-50 (seed 002).

Every backbone maps an image batch to a feature vector (B, D) and exposes `feature_dim` and
`cam_layer` (the last convolutional block, the usual Grad-CAM target). All are randomly initialised, as in
the seeds; weights come only from a local file (`load_local_weights`), never from a hub.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.resnet import BasicBlock

from ..errors import ConfigError


def _block(cin: int, cout: int, stride: int) -> BasicBlock:
    down = None
    if stride != 1 or cin != cout:
        down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
    return BasicBlock(cin, cout, stride=stride, downsample=down)


class CompactNet(nn.Module):
    """ResNet-style CNN for the CPU with no early downsampling.

    The first two 3x3 convolutions run at full resolution: a strided 7x7 stem and max-pool (ResNet's)
    alias away the 2-, 4- and 8-pixel periodic artifacts that generator fingerprints consist of
    (Gragnaniello et al., ICME 2021). Downsampling starts only after the network could read them.
    """

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.stem = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
        )
        self.layer1 = _block(w, 2 * w, stride=2)
        self.layer2 = _block(2 * w, 4 * w, stride=2)
        self.layer3 = _block(4 * w, 8 * w, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 8 * w

    @property
    def cam_layer(self) -> nn.Module:
        return self.layer3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return torch.flatten(self.pool(x), 1)


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet with its classifier removed: features are the pooled last block."""

    def __init__(self, arch: str):
        super().__init__()
        net = {"resnet18": resnet18, "resnet50": resnet50}[arch](weights=None)
        self.feature_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net

    @property
    def cam_layer(self) -> nn.Module:
        return self.net.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_backbone(name: str) -> nn.Module:

    if name == "compact":
        return CompactNet()
    if name in ("resnet18", "resnet50"):
        return TorchvisionResNet(name)
    raise ConfigError(f"unknown backbone {name!r}; valid choices: compact, resnet18, resnet50")
