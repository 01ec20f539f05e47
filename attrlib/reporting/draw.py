"""Drawing on one matplotlib axes: an image tensor, and a CAM over an image. The figures (`figures`) and
notebook 08's explorer (`attrlib.inspection.explorer`) build on these; this module imports nothing else
of attrlib, so the explorer can use it without importing the figures.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch


def show_image(ax: plt.Axes, x: torch.Tensor) -> np.ndarray:
    """Draw an image tensor (3, H, W) in [0, 1] without ticks; returns it as H x W x 3."""
    img = x.permute(1, 2, 0).clamp(0, 1).cpu().numpy()
    ax.imshow(img, interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    return img


def show_overlay(ax: plt.Axes, img: np.ndarray, cam: torch.Tensor, alpha: float = 0.5) -> None:
    """Draw an image (H x W x 3) with a CAM (H, W) in [0, 1] over it (jet colour map, fixed 0..1 scale)."""
    ax.imshow(img, interpolation="nearest")
    ax.imshow(cam.cpu().numpy(), cmap="jet", alpha=alpha, vmin=0, vmax=1, interpolation="bilinear")
    ax.set_xticks([]), ax.set_yticks([])

