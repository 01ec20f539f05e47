"""A content-blind forensic baseline: sixteen global statistics of each image's noise residual, and a
scikit-learn logistic regression on them (standardised), fitted in closed form. No CNN, no content.

The residual is the image minus its 3x3 local mean (a high-pass in the spirit of the SRM filters, Fridrich &
Kodovsky 2012); the statistics are those the forensic literature reads from it:

    0-2    log RMS of the residual per colour channel (noise level; a high-frequency deficit lowers it)
    3-5    correlations of the residual between channels R-G, R-B, G-B (colour-locked vs independent noise)
    6-8    log share of the residual's power at (0.5, 0.5), (0.5, 0), (0, 0.5) cycles/pixel: the checkerboard
           and Nyquist peaks of transposed convolutions and zero-insertion upsampling (Odena et al. 2016)
    9-11   the same at (0.25, 0.25) (both diagonals), (0.25, 0), (0, 0.25): the peaks of 4x upsampling,
           the spectral replicas Frank et al. (ICML 2020) and Durall et al. (CVPR 2020) read
    12     log share of the power above 0.375 cycles/pixel (the high band a low-pass cliff removes)
    13     log peak-to-mean ratio of the spectrum (any periodic trace, at whatever frequency)
    14     log ratio of horizontal to vertical first-difference energy (anisotropic pipelines)
    15     log kurtosis of the residual (heavy-tailed edges vs Gaussian noise)

Features are computed per crop the loader gives and averaged over each image's crops to fit; at test time
the engine averages the crops' log-probabilities, as for every technique. The whole fit happens in
`prepare` (the engine's hook for techniques fitted in closed form); its `steps` is 0 whatever the config's
budget, so the loop does no optimiser step.
The model keeps the interface the inspection layer reads (`features`, `cam_layer`: the residual, so
Grad-CAM shows where the residual carries the evidence), and the fit lives in its state_dict (scaler mean
and scale as buffers, the coefficients as the generator head's weights), so a checkpoint round-trips.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from . import register
from .base import Technique, image_starts, linear_head_rows, per_image

FEATURES = ("rms_r", "rms_g", "rms_b", "corr_rg", "corr_rb", "corr_gb",
            "nyq_diag", "nyq_vert", "nyq_horiz", "quarter_diag", "quarter_vert", "quarter_horiz",
            "high_band", "peak_to_mean", "anisotropy", "kurtosis")
_EPS = 1e-12


class HighPass(nn.Module):
    """x minus its 3x3 mean, with circular padding so the residual keeps the image's size and its spectrum
    the image's frequency grid (a periodic trace at 1/2 or 1/4 cycles/pixel falls on one bin)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="circular"), 3, stride=1)


def _share(power: torch.Tensor, total: torch.Tensor, fy: float, fx: float) -> torch.Tensor:
    h, w = power.shape[-2:]
    return power[:, round(fy * h) % h, round(fx * w) % w] / total


def residual_statistics(r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B, 16) statistics (`FEATURES`) of residuals r (B, 3, H, W) of images x (B, 3, H, W)."""
    b = r.shape[0]
    flat = r.flatten(2)
    centred = flat - flat.mean(2, keepdim=True)
    var = centred.pow(2).mean(2) + _EPS
    rms = torch.log(var.sqrt())
    cov = lambda i, j: (centred[:, i] * centred[:, j]).mean(1) / (var[:, i] * var[:, j]).sqrt()  # noqa: E731
    corr = torch.stack([cov(0, 1), cov(0, 2), cov(1, 2)], 1)

    power = torch.fft.fft2(r).abs().pow(2).sum(1)  # (B, H, W), summed over channels
    h, w = power.shape[-2:]
    fy = torch.fft.fftfreq(h, device=r.device).abs()[:, None]
    fx = torch.fft.fftfreq(w, device=r.device).abs()[None, :]
    not_dc = torch.ones(h, w, dtype=torch.bool, device=r.device)
    not_dc[0, 0] = False
    total = power[:, not_dc].sum(1) + _EPS
    shares = [_share(power, total, 0.5, 0.5), _share(power, total, 0.5, 0.0), _share(power, total, 0.0, 0.5),
              (_share(power, total, 0.25, 0.25) + _share(power, total, 0.25, -0.25)) / 2,
              _share(power, total, 0.25, 0.0), _share(power, total, 0.0, 0.25),
              power[:, (fy ** 2 + fx ** 2).sqrt() >= 0.375].sum(1) / total,
              power[:, not_dc].max(1).values / (total / not_dc.sum())]
    spectral = torch.log(torch.stack(shares, 1) + _EPS)

    grey = x.mean(1)
    dx = (grey[:, :, 1:] - grey[:, :, :-1]).pow(2).mean((1, 2))
    dy = (grey[:, 1:, :] - grey[:, :-1, :]).pow(2).mean((1, 2))
    anisotropy = torch.log((dx + _EPS) / (dy + _EPS))
    g = centred.mean(1)
    kurtosis = torch.log(g.pow(4).mean(1) / (g.pow(2).mean(1).pow(2) + _EPS) + _EPS)
    return torch.cat([rms, corr, spectral, anisotropy.view(b, 1), kurtosis.view(b, 1)], 1)


class ResidualStatsModel(nn.Module):
    """Residual -> standardised statistics -> linear head -> log-probabilities (the logistic regression)."""

    def __init__(self, n_generators: int):
        super().__init__()
        d = len(FEATURES)
        self.residual = HighPass()
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("scale", torch.ones(d))
        self.generator_head = nn.Linear(d, n_generators)
        nn.init.zeros_(self.generator_head.weight)  # before the fit: uniform probabilities
        nn.init.zeros_(self.generator_head.bias)
        self.subclass_head = None

    @property
    def dual_head(self) -> bool:
        return False

    @property
    def cam_layer(self) -> nn.Module:
        return self.residual

    def body_parameters(self) -> list[nn.Parameter]:
        return []

    def statistics(self, x: torch.Tensor) -> torch.Tensor:
        """The raw (unstandardised) statistics of x (B, 3, H, W) in [0, 1]."""
        x = x.float()
        return residual_statistics(self.residual(x), x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return (self.statistics(x) - self.mean) / self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.generator_head(self.features(x)), dim=1)


@register("residual_stats")
class ResidualStats(Technique):
    description = ("content-blind forensic baseline: 16 global residual statistics (noise level, channel "
                   "correlations, Nyquist and 1/4 spectral peaks) + logistic regression (closed form)")
    defaults = {"C": 1.0, "max_iter": 2000}
    search_space = {"C": ("log", 0.01, 100.0)}  # the regression's inverse L2 strength (no learning rate: no steps)

    def __init__(self, config, generators, subclasses):
        super().__init__(config, generators, subclasses)
        # the CNN the base class built is replaced: this technique has no learned features
        self.model = ResidualStatsModel(self.n_generators)
        self.optimizer = self.make_optimizer(self.model.parameters())

    @property
    def steps(self) -> int:
        """Fitted in closed form by `prepare`: no optimiser step, whatever the config's budget."""
        return 0

    @torch.no_grad()
    def prepare(self, loader) -> None:
        device = self.model.mean.device
        feats, labels = [], []
        for batch in loader:
            f = self.model.statistics(batch["x"].to(device)).double().cpu()
            y = batch["generator"]
            owner = batch.get("owner")
            if owner is not None:  # several crops per image: their statistics averaged, one row per image
                f, y = per_image(f, owner), y[image_starts(owner)]
            feats.append(f)
            labels.append(y)
        X, y = torch.cat(feats).numpy(), torch.cat(labels).numpy()
        self.fit_features(X, y)

    def fit_features(self, X: np.ndarray, y: np.ndarray) -> None:
        """Fit the scaler and the logistic regression on statistics X (N, 16) and generator indices y (N,)."""
        scaler = StandardScaler().fit(X)
        weight, bias = linear_head_rows(scaler.transform(X), y, self.n_generators, make_lr=lambda: LogisticRegression(
            C=float(self.hparams["C"]), max_iter=int(self.hparams["max_iter"])))
        m = self.model
        as_tensor = lambda a, like: torch.as_tensor(a, dtype=like.dtype, device=like.device)  # noqa: E731
        m.mean.copy_(as_tensor(scaler.mean_, m.mean))
        m.scale.copy_(as_tensor(scaler.scale_, m.scale))
        m.generator_head.weight.data.copy_(as_tensor(weight, m.generator_head.weight))
        m.generator_head.bias.data.copy_(as_tensor(bias, m.generator_head.bias))
