"""Training-time augmentation of the forensic literature: random Gaussian blur and JPEG re-compression.

Wang et al. (CVPR 2020, "CNN-generated images are surprisingly easy to spot... for now") train on images
blurred (sigma ~ U[0, 3]) with probability p and JPEG-compressed (quality ~ U{30, ..., 100}) with
probability p, independently; p = 0.5 ("Blur+JPEG (0.5)") made detectors robust to both and generalise
better, at some cost in clean accuracy. `jpeg` keeps only the compression: a fingerprint of a few grey levels
does not survive a blur of sigma 3, so blurring a training image may leave its label without evidence. Applied to a training item's whole image before it is cropped,
as a real pipeline degrades whole files (JPEG's 8x8 blocks stay aligned to the image's origin).

The draws come from torch's global random generator, as the crops do, so a seeded run is reproducible.
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from ..config import AUGMENTATIONS
from ..errors import ConfigError

BLUR_SIGMA = (0.0, 3.0)   # Wang et al.'s range, pixels
JPEG_QUALITY = (30, 100)  # inclusive


def jpeg_compress(img: np.ndarray, quality: int) -> np.ndarray:
    """A uint8 H x W x 3 image saved as JPEG at `quality` and decoded again (Pillow's default 4:2:0 chroma
    subsampling). The one JPEG of the package: training augmentation and the robustness table use it."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """A uint8 (or float) C x H x W image blurred by a Gaussian of width `sigma` px, truncated at +-3 sigma
    (> 99.7 % of its mass), reflect padding."""
    k = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(img, kernel_size=[k, k], sigma=[sigma, sigma])


class BlurJPEG:
    """Callable on a uint8 C x H x W image: blurred with probability `prob` (never when `blur` is False), then
    JPEG-compressed with probability `prob`."""

    def __init__(self, prob: float = 0.5, blur: bool = True):
        if not 0.0 <= prob <= 1.0:
            raise ConfigError(f"config field 'augment_prob' is {prob!r}; it must lie in [0, 1]")
        self.prob, self.blur = prob, blur

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        u = torch.rand(4).tolist()  # one draw of four numbers per image, whatever happens to it
        if self.blur and u[0] < self.prob:
            sigma = BLUR_SIGMA[0] + u[1] * (BLUR_SIGMA[1] - BLUR_SIGMA[0])
            if sigma > 0.1:  # a narrower Gaussian leaves 8-bit pixels as they are
                x = gaussian_blur(x, sigma)
        if u[2] < self.prob:
            quality = JPEG_QUALITY[0] + min(int(u[3] * (JPEG_QUALITY[1] - JPEG_QUALITY[0] + 1)),
                                            JPEG_QUALITY[1] - JPEG_QUALITY[0])
            x = torch.from_numpy(jpeg_compress(x.permute(1, 2, 0).numpy(), quality)).permute(2, 0, 1).contiguous()
        return x

    def __repr__(self) -> str:
        return f"BlurJPEG(prob={self.prob}, blur={self.blur})"


def build_augment(name: str, prob: float = 0.5):
    """The training augmentation a config names (`augment`, `augment_prob`), or None."""
    if name == "none":
        return None
    if name in ("blur_jpeg", "jpeg"):
        return BlurJPEG(prob, blur=name == "blur_jpeg")
    raise ConfigError(f"config field 'augment' is {name!r}; valid choices: {', '.join(AUGMENTATIONS)}")
