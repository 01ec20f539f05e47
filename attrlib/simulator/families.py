"""SIMULATED generator families: the fingerprint each of seed 002's six generators would leave.

Nothing here runs StyleGAN, a diffusion model or a VQGAN. Each family is a small, fixed image pipeline that
mimics the artifacts its architecture is known to leave (see `docs/benchmark.md`), in the
spirit of AutoGAN (Zhang, Karaman & Chang, WIFS 2019) and of Yang et al.'s model synthesis for zero-shot
attribution: shallow upsampling decoders whose fingerprints transfer to real generators.

A family g turns a clean content image c (from `attrlib.simulator.content`) into

    x = round8( c + s/255 * R_g(c) ),     R_g = HP( sqrt(1 - rho_g^2) * D_g(c) / a_g  +  rho_g * N_g / b_g )

- D_g(c) = P_g(down_f(c)) - ideal_up(down_f(c)): what the family's own upsampling pipeline P_g does
  differently from a good (bicubic) upsampler of the same low-resolution image, so the artifact follows the
  local content (edges) as real fingerprints do. For the two families with a high-frequency deficit
  (guided_diffusion, and stylegan3's low-pass cliff) D_g also holds H_g(c) - c for the family's filter H_g.
- N_g is the family's content-independent noise (per-pixel noise injection, logistic output noise...).
- HP removes the residual's low frequencies (c minus a Gaussian blur, sigma 2 px): the fingerprint lives in
  high frequencies only, so an 8x8 thumbnail says nothing about the family (check 3 of benchmark.md), and no
  family shifts brightness or colour (check 5).
- a_g, b_g (together the recipe's beta_g) are calibrated on a fixed batch of content so that R_g has unit RMS
  for every family: every family is equally "loud", and the strength s is the fingerprint's RMS in 8-bit
  grey levels. s = 0 gives c itself for every family: nothing tells the families apart.

THE NON-ADDITIVE TRACE (the benchmark's `trace="pipeline"`; `pipeline_image`). Above, the fingerprint is
ADDED to the clean content: highpass(x) = highpass(255 c) + s R_g(c), so copying one image's high band onto
another image's low band carries the whole fingerprint along with the detail it belongs to, and a technique
that transplants high-pass residuals across images is favoured by construction. In the pipeline trace the
whole image's high band passes through the family's pipeline:

    x = round8( LP(255 c) + HP( M(c) * T( HP(255 c) + kappa_g(s) s R_g(c) ) ) ),    LP = 1 - HP

- T(h) = A tanh(h / A), A = 24 grey levels (about twice the content's high-band RMS): a soft saturation of
  the band, so content and trace interact: on strong edges (|h| >> A) the trace is squeezed out, on flat and
  textured regions it passes; a trace that opposes the detail (guided_diffusion's high-frequency deficit)
  takes edges out of saturation. The local form of the trace depends on the image's own detail.
- M(c) = clip( (blur_4(luma(c)) / mean luma)^2, 0.25, 2 ): a local luminance gain (typically 0.4-1.6 on this
  content): detail and trace are stronger where the image is bright, weaker where it is dark. M comes from
  the LOW band, so a transplanted high band brings the luminance layout of the image it came from: moved
  onto a low band whose bright regions lie elsewhere, its trace is strong where real images of that content
  have a weak one and vice versa. Measured (tests/test_nonadditive_trace.py): a brightness ramp under the
  same detail multiplies the trace's bright-half/dark-half RMS ratio by 2.0-2.6 at 64 px in the pipeline
  trace, by 0.99-1.02 in the additive one (stylegan2 1.41: its checkerboard already scales with brightness).
  Moving faces' high band onto horses' low band, the transplanted trace is near-exact in the additive trace
  for guided_diffusion and stylegan3 (relative error 0.05, 0.22 at 32 px) and 0.46, 0.59 off in the pipeline;
  the latent families (latent_diffusion, lsgm, taming_transformers) take most of their additive fingerprint
  from the low band already (errors 1.2-1.7: their latent is down_f(c)), so transplants never carried it.
- The outer HP keeps everything the pipeline does in the high band: no family moves the brightness or the
  colours, and an 8x8 thumbnail says nothing about the family (checks 3 and 5 of benchmark.md).
- T and M are the same for every family (a family-seeded saturation would be a second fingerprint that the
  strength does not control, visible even at s = 0): at s = 0 every family gives the same image (not 255 c:
  the content's own detail is saturated and luminance-weighted too), and the family lives in R_g only, now
  entangled with the content. The fingerprint is x_g - x_0 (x_0: the image at s = 0), and kappa_g(s)
  (`pipeline_calibration`) is solved on the calibration batch so that its RMS is s grey levels, as a_g, b_g
  do for the additive trace: every family is equally loud at the same strength.
- The pipeline draws no random numbers of its own: a stream gives the same content and noise in both traces.

Kernels, codebooks and filter parameters come from a fixed per-family seed (`FAMILY_SEEDS`): like a trained
generator, a family is one fixed network; the benchmark's `seed` only changes the content and noise draws.

Family pipelines (literature in docs/benchmark.md):

- stylegan2 (Karras et al., CVPR 2020): f=4; two stages of zero-insertion x2 and a 4x4 [1,3,3,1] FIR kernel
  with a small seeded zero-sum perturbation (unequal polyphase sums: checkerboard, Odena et al. 2016);
  colour-locked per-pixel noise injection.
- stylegan3 (Karras et al., NeurIPS 2021): f=4; Kaiser-windowed sinc x4 upsampling, a filtered nonlinearity
  (up x2, soft nonlinearity, low-pass, down x2) and a steep low-pass near Nyquist; no noise.
- latent_diffusion (Rombach et al., CVPR 2022): f=4; seeded 1x1 encoder to a 4-channel latent with small
  noise; two stages of nearest x2, 3x3 convolution and swish; 1x1 back to RGB.
- taming_transformers (Esser et al., CVPR 2021): f=8; latent pulled towards a seeded codebook (K words),
  each word adding its own 8x8 texture atom, as strong as the detail of the cell it replaces; three stages
  of nearest x2 and 3x3 convolution.
- lsgm (Vahdat et al., NeurIPS 2021): latents at f=8 and f=4; nearest x2, seeded depthwise 5x5 convolution
  with a bilinear skip; discretised-logistic output noise coupled across colour channels.
- guided_diffusion (Dhariwal & Nichol 2021; Nichol et al. 2021): no bottleneck; a high-frequency deficit
  (spectral gain 1 - a (|f|/0.5)^p, Ricker et al.) and independent per-channel residual noise.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import platform
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..io import atomic_write_text, cache_root
from .content import SUBCLASS_DRAWERS, draw

GENERATORS = ("guided_diffusion", "latent_diffusion", "lsgm", "stylegan2", "stylegan3", "taming_transformers")

# One fixed seed per family: its "trained weights". Changing one changes the family's fingerprint.
FAMILY_SEEDS = {g: zlib.crc32(g.encode()) for g in GENERATORS}

# Share of the residual's RMS that is content-independent noise (0: a purely content-driven fingerprint).
# Kept small on purpose: noise looks the same on every subclass, so a large share makes the fingerprint
# trivially subclass-independent and biased training generalises almost perfectly (measured: with shares
# 0.4-0.5 plain ERM on the biased default reached ~0.8 held-out accuracy, far above seed 002's 0.49).
# Real fingerprints are mostly carried by content (edges, textures), and so is most of this one.
NOISE_SHARE = {"stylegan2": 0.15, "stylegan3": 0.0, "latent_diffusion": 0.0, "taming_transformers": 0.0,
               "lsgm": 0.15, "guided_diffusion": 0.2}

HIGHPASS_SIGMA = 2.0   # px; removes what an 8x8 thumbnail could see, keeps 2-, 4- and 8-pixel periods
CALIBRATION_N = 96     # content images of 64 px per calibration batch (all subclasses), from a fixed seed

# How the fingerprint meets the content (the benchmark's `trace`): "additive" adds it to the clean image,
# "pipeline" passes the whole image's high band through the family's pipeline (see the module docstring).
TRACES = ("additive", "pipeline")
PIPELINE_SATURATION = 24.0         # grey levels: A of T(h) = A tanh(h/A), about twice the content's high-band RMS
PIPELINE_GAIN_SIGMA = 4.0          # px: the blur of the luma behind the local gain M(c)
PIPELINE_GAIN_POWER = 2.0          # M = (local / mean luma)^2: with the power 1 M spans only 0.65-1.24 here
PIPELINE_GAIN_RANGE = (0.25, 2.0)  # M(c)'s clip: a dark region keeps a quarter of its detail and trace
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
PIPELINE_CALIBRATION_STEPS = 6     # fixed-point steps of the strength calibration (converged to < 0.1 %)


# ------------------------------------------------------------------------------------------------ helpers
def _conv(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Depthwise 'same' convolution with edge replication; k is (C, kh, kw) or (kh, kw) for all channels."""
    c = x.shape[1]
    if k.dim() == 2:
        k = k.expand(c, *k.shape)
    kh, kw = k.shape[-2:]
    pad = ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2)
    return F.conv2d(F.pad(x, pad, mode="replicate"), k.unsqueeze(1).to(x.dtype), groups=c)


def _mix(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """1x1 convolution: channels (B, Cin, H, W) -> (B, Cout, H, W) with matrix m (Cout, Cin)."""
    return torch.einsum("oc,bchw->bohw", m.to(x.dtype), x)


def _down(x: torch.Tensor, f: int) -> torch.Tensor:
    return F.avg_pool2d(x, f)


def _nearest(x: torch.Tensor, f: int = 2) -> torch.Tensor:
    return F.interpolate(x, scale_factor=f, mode="nearest")


def _bilinear(x: torch.Tensor, f: int = 2) -> torch.Tensor:
    return F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)


def ideal_up(x: torch.Tensor, f: int) -> torch.Tensor:
    """The reference upsampler every family is compared with (bicubic, as a good generic upsampler)."""
    return F.interpolate(x, scale_factor=f, mode="bicubic", align_corners=False)


def _gauss_kernel1d(sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def highpass(x: torch.Tensor, sigma: float = HIGHPASS_SIGMA) -> torch.Tensor:
    """x minus its Gaussian blur (separable, edge-replicated)."""
    return x - _sep(x, _gauss_kernel1d(sigma))


def _spectral(x: torch.Tensor, gain_fn) -> torch.Tensor:
    """Filter by a radial spectral gain gain_fn(|f|) (|f| in cycles/pixel, 0..0.71). The image is mirrored to
    twice its size first so that the FFT's wrap-around does not add edges that are not in the image."""
    h, w = x.shape[-2:]
    xx = torch.cat([x, x.flip(-1)], dim=-1)
    xx = torch.cat([xx, xx.flip(-2)], dim=-2)
    fy = torch.fft.fftfreq(2 * h, dtype=torch.float64).view(-1, 1)
    fx = torch.fft.rfftfreq(2 * w, dtype=torch.float64).view(1, -1)
    gain = gain_fn(torch.sqrt(fx ** 2 + fy ** 2))
    out = torch.fft.irfft2(torch.fft.rfft2(xx) * gain, s=(2 * h, 2 * w))
    return out[..., :h, :w]


def _kaiser_sinc(f: int, cutoff: float, taps_per_phase: int, beta: float) -> torch.Tensor:
    """1-D Kaiser-windowed sinc interpolation filter for zero-insertion by f (gain f), StyleGAN3-style.
    `cutoff` is in cycles per *output* pixel."""
    n = f * taps_per_phase
    t = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    h = 2 * cutoff * torch.sinc(2 * cutoff * t) * torch.from_numpy(np.kaiser(n, beta))
    return h / h.sum() * f


def _lowpass_filter(cutoff: float, taps: int, beta: float) -> torch.Tensor:
    t = torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2
    h = 2 * cutoff * torch.sinc(2 * cutoff * t) * torch.from_numpy(np.kaiser(taps, beta))
    return h / h.sum()


def _offset(length: int, up: int, down: int) -> int:
    """Where to read a 'valid' correlation of a replicate-padded (by `pad` samples), zero-inserted signal so
    that output pixel o is centred on its own footprint: o*down + (down-1)/2 + up*pad - (length+up-2)/2.
    Misaligned upsampling shifts the image by a fraction of a pixel, and that shift (not an upsampling
    artifact) would then dominate the residual and show even in a thumbnail. Returns the part without pad."""
    twice = (down - 1) - (length + up - 2)
    if twice % 2:
        raise ValueError(f"kernel of length {length} cannot be centred for up={up}, down={down}")
    return twice // 2


def _resample1d(x: torch.Tensor, kernel: torch.Tensor, up: int, down: int) -> torch.Tensor:
    """1-D along the last axis of (B, 1, n): replicate-pad, zero-insert by `up`, filter, decimate by `down`."""
    n, length = x.shape[-1], len(kernel)
    pad = length // up + 2
    z = F.pad(x, (pad, pad), mode="replicate")
    if up > 1:
        zi = z.new_zeros(*z.shape[:-1], z.shape[-1] * up)
        zi[..., ::up] = z
        z = zi
    y = F.conv1d(z, kernel.flip(0).view(1, 1, -1).to(z.dtype))
    start = _offset(length, up, down) + up * pad
    return y[..., start: start + n * up: down]


@functools.lru_cache(maxsize=64)
def _operator(n: int, kernel: tuple, up: int, down: int) -> torch.Tensor:
    """The (n*up/down, n) matrix of `_resample1d`, found by applying it to the n unit impulses: two matrix
    products are much faster on a CPU than depthwise convolutions with long kernels."""
    eye = torch.eye(n, dtype=torch.float64).view(n, 1, n)
    return _resample1d(eye, torch.tensor(kernel, dtype=torch.float64), up, down)[:, 0, :].T.contiguous()


def _upconv2d(x: torch.Tensor, k: torch.Tensor, up: int) -> torch.Tensor:
    """Zero-insert by `up` and apply the depthwise 2-D kernels k (C, L, L), centred as `_resample1d` does."""
    c, length = x.shape[1], k.shape[-1]
    pad = length // up + 2
    z = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    zi = z.new_zeros(z.shape[0], c, z.shape[2] * up, z.shape[3] * up)
    zi[..., ::up, ::up] = z
    y = F.conv2d(zi, k.flip(-1, -2).unsqueeze(1).to(x.dtype), groups=c)
    start = _offset(length, up, 1) + up * pad
    h, w = x.shape[-2:]
    return y[..., start: start + h * up, start: start + w * up]


def _sep(x: torch.Tensor, k1d: torch.Tensor, up: int = 1, down: int = 1) -> torch.Tensor:
    """Separable filtering of (B, C, H, W) by k1d along both axes, with optional zero-insertion and decimation."""
    key = tuple(float(v) for v in k1d)
    mh = _operator(x.shape[-2], key, up, down)
    mw = _operator(x.shape[-1], key, up, down)
    return torch.matmul(torch.matmul(mh, x), mw.T)


def _no_shift(p: np.ndarray) -> np.ndarray:
    """A kernel perturbation with zero sum and zero first moments: it changes neither the brightness nor the
    position of the image (a shift would show as a low-frequency, thumbnail-visible residual), only how the
    pipeline treats high frequencies (e.g. unequal polyphase sums: checkerboards)."""
    h, w = p.shape[-2:]
    yy, xx = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    basis = np.stack([np.ones_like(xx), xx, yy]).reshape(3, -1)
    flat = p.reshape(-1, h * w)
    coef = np.linalg.lstsq(basis.T, flat.T, rcond=None)[0]
    return (flat - (basis.T @ coef).T).reshape(p.shape)


# ---------------------------------------------------------------------------------------------- families
class Family:
    """A simulated generator family: `deterministic(c)` is D_g, `noise(shape, rng)` is N_g (unit-scale)."""

    name: str = ""
    f: int = 1

    def __init__(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(FAMILY_SEEDS[self.name] if seed is None else seed)
        self.build()

    def build(self) -> None:
        """Draw the family's fixed parameters from self.rng."""

    def deterministic(self, c: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        raise NotImplementedError

    def noise(self, shape: tuple, rng: np.random.Generator) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.float64)

    def _t(self, a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float64))


class StyleGAN2(Family):
    name, f = "stylegan2", 4

    def build(self) -> None:
        b = np.array([1.0, 3.0, 3.0, 1.0])
        base = np.outer(b, b) / np.outer(b, b).sum() * 4.0  # gain 4 makes up for the inserted zeros
        kernels = []
        for _ in range(2):
            per_channel = []
            for _ in range(3):
                p = _no_shift(self.rng.normal(0.0, 0.06, (4, 4)))
                per_channel.append(base + p)                 # DC gain stays 4, polyphase sums differ
            kernels.append(self._t(np.stack(per_channel)))
        self.kernels = kernels
        self.noise_colour = self._t(np.abs(self.rng.normal(1.0, 0.3, 3)))

    def deterministic(self, c, rng):
        d = _down(c, self.f)
        h = d
        for k in self.kernels:
            h = _upconv2d(h, k, 2)
        return h - ideal_up(d, self.f)

    def noise(self, shape, rng):
        b, _, hh, ww = shape
        n = torch.from_numpy(rng.standard_normal((b, 1, hh, ww)).astype(np.float64))
        return n * self.noise_colour.view(1, 3, 1, 1)  # one noise map, locked across colours


class StyleGAN3(Family):
    name, f = "stylegan3", 4

    def build(self) -> None:
        r = self.rng
        self.up4 = _kaiser_sinc(4, cutoff=r.uniform(0.10, 0.12), taps_per_phase=6, beta=r.uniform(5.0, 8.0))
        self.up2 = _kaiser_sinc(2, cutoff=0.25, taps_per_phase=6, beta=r.uniform(5.0, 8.0))
        self.lp2 = _lowpass_filter(cutoff=r.uniform(0.20, 0.23), taps=12, beta=r.uniform(5.0, 8.0))
        self.alpha = float(r.uniform(0.15, 0.25))     # strength of the soft nonlinearity
        self.cliff = float(r.uniform(0.36, 0.40))     # cycles/pixel where the output spectrum falls off

    def deterministic(self, c, rng):
        d = _down(c, self.f)
        h = _sep(d, self.up4, up=4)
        # filtered nonlinearity: run the nonlinearity at twice the rate, low-pass, decimate (alias-free)
        u = _sep(h, self.up2, up=2)
        u = u + self.alpha * torch.tanh(4.0 * (u - 0.5)) / 4.0
        h = _sep(u, self.lp2, down=2)
        cliff = self.cliff
        lp = _spectral(c, lambda fr: torch.sigmoid((cliff - fr) / 0.01))
        return (h - ideal_up(d, self.f)) + (lp - c)


class LatentDiffusion(Family):
    name, f = "latent_diffusion", 4

    def build(self) -> None:
        r = self.rng
        self.enc = self._t(r.normal(0.0, 0.6, (4, 3)) + np.eye(4, 3))
        self.dec = torch.linalg.pinv(self.enc)
        smooth = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float64) / 16
        self.convs = []
        for _ in range(2):
            w = np.zeros((4, 4, 3, 3))
            for o in range(4):
                for i in range(4):
                    base = smooth if o == i else 0.0
                    p = r.normal(0.0, 0.05 if o == i else 0.02, (3, 3))
                    w[o, i] = base + _no_shift(p)            # no colour, brightness or position shift
            self.convs.append(self._t(w))
        self.swish = float(r.uniform(0.15, 0.25))
        self.latent_noise = 0.01

    def deterministic(self, c, rng):
        d = _down(c, self.f)
        z = _mix(d, self.enc)
        z = z + self.latent_noise * torch.from_numpy(rng.standard_normal(tuple(z.shape)).astype(np.float64))
        for w in self.convs:
            z = _nearest(z, 2)
            z = F.conv2d(F.pad(z, (1, 1, 1, 1), mode="replicate"), w)
            z = z + self.swish * F.silu(z)
        return _mix(z, self.dec) / (1 + self.swish * 0.6) - ideal_up(d, self.f)


class TamingTransformers(Family):
    name, f = "taming_transformers", 8

    def build(self) -> None:
        r = self.rng
        self.enc = self._t(r.normal(0.0, 0.6, (4, 3)) + np.eye(4, 3))
        self.dec = torch.linalg.pinv(self.enc)
        self.K = 32
        # codebook words spread over the latent range of the content's colours
        rgb = r.uniform(0.0, 1.0, (self.K, 3))
        self.codebook = self._t(rgb) @ self.enc.T
        self.pull = 0.5                                # how far the latent moves to its codeword
        atoms = r.normal(0.0, 1.0, (self.K, 3, 8, 8))
        self.atoms = self._t(atoms - atoms.mean(axis=(2, 3), keepdims=True))
        self.atom_gain = 0.02
        self.detail_ref = 0.05  # typical RMS of the detail an 8x8 cell loses; scales atoms to ~atom_gain
        smooth = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float64) / 16
        self.convs = []
        for _ in range(3):
            w = np.zeros((4, 4, 3, 3))
            for o in range(4):
                for i in range(4):
                    p = r.normal(0.0, 0.05 if o == i else 0.02, (3, 3))
                    w[o, i] = (smooth if o == i else 0.0) + _no_shift(p)
            self.convs.append(self._t(w))

    def deterministic(self, c, rng):
        d = _down(c, self.f)
        z = _mix(d, self.enc)                                   # (B, 4, h, w)
        flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
        idx = torch.cdist(flat, self.codebook).argmin(dim=1)
        q = self.codebook[idx].view(z.shape[0], z.shape[2], z.shape[3], 4).permute(0, 3, 1, 2)
        z = z + self.pull * (q - z)
        for w in self.convs:
            z = _nearest(z, 2)
            z = F.conv2d(F.pad(z, (1, 1, 1, 1), mode="replicate"), w)
        out = _mix(z, self.dec)
        # every latent cell's codeword adds its own 8x8 texture atom: blocky, repeated VQ atoms. A codeword
        # stands for texture, so its atom is as strong as the detail the cell had (none on flat regions):
        # the fingerprint follows the content instead of being an overlay that any content carries alike.
        b, _, h, w = d.shape
        atoms = self.atoms[idx].view(b, h, w, 3, 8, 8).permute(0, 3, 1, 4, 2, 5).reshape(b, 3, h * 8, w * 8)
        detail = (c - ideal_up(d, self.f)).pow(2).mean(dim=1, keepdim=True)
        detail = _nearest(F.avg_pool2d(detail, 8).sqrt(), 8) / self.detail_ref
        return out + self.atom_gain * atoms * detail - ideal_up(d, self.f)


class LSGM(Family):
    name, f = "lsgm", 8

    def build(self) -> None:
        r = self.rng
        self.dw = []
        for _ in range(3):
            k = _no_shift(r.normal(0.0, 0.04, (3, 5, 5)))
            k[:, 2, 2] += 1.0                               # identity plus a zero-sum perturbation
            self.dw.append(self._t(k))
        self.skip = float(r.uniform(0.4, 0.6))
        mix = np.tril(r.normal(0.0, 0.5, (3, 3)), -1) + np.eye(3)
        self.coupling = self._t(mix)                        # channel i's noise depends on channels < i

    def deterministic(self, c, rng):
        d8, d4 = _down(c, 8), _down(c, 4)
        h = d8
        for i, k in enumerate(self.dw):
            up = _nearest(h, 2)
            h = (1 - self.skip) * _conv(up, k) + self.skip * _bilinear(h, 2)
            if i == 0:                                       # the second latent scale joins at f=4
                h = 0.5 * (h + d4)
        return h - ideal_up(d4, 4)

    def noise(self, shape, rng):
        u = rng.uniform(1e-6, 1 - 1e-6, shape).astype(np.float64)
        logistic = torch.from_numpy(np.log(u) - np.log1p(-u))
        return _mix(logistic, self.coupling)


class GuidedDiffusion(Family):
    name, f = "guided_diffusion", 1

    def build(self) -> None:
        r = self.rng
        self.a = float(r.uniform(0.5, 0.7))
        self.p = float(r.uniform(2.0, 3.0))
        self.channel_std = self._t(r.uniform(0.6, 1.4, 3))

    def deterministic(self, c, rng):
        a, p = self.a, self.p
        return _spectral(c, lambda fr: 1 - a * (fr.clamp(max=0.5) / 0.5) ** p) - c

    def noise(self, shape, rng):
        n = torch.from_numpy(rng.standard_normal(shape).astype(np.float64))
        return n * self.channel_std.view(1, 3, 1, 1)       # independent per channel


FAMILY_CLASSES = {cls.name: cls for cls in (StyleGAN2, StyleGAN3, LatentDiffusion, TamingTransformers, LSGM,
                                            GuidedDiffusion)}


@functools.lru_cache(maxsize=None)
def family(name: str, instance: str = "", spread: float = 0.0) -> Family:
    """The family's pipeline; with an `instance` name and spread > 0, one separately "trained" model of it.

    In the seeds' data every generator x dataset cell is its own trained model (seed 000, Table 1:
    StyleGAN2 on FFHQ, on LSUN cars, ...), and fingerprints differ between trainings of one architecture
    (Yu et al., ICCV 2019). An instance keeps the family's architecture (upsampling type, factor, stages,
    noise type) and moves every learned parameter (kernels, codebook, filter settings) a share `spread` of
    the way towards an independent draw seeded by the instance name: 0 is the family's base model for
    every cell, 1 an unrelated model of the same architecture. Attribution then has to rely on what the
    architecture leaves in common, as it must with real generators.
    """
    base = FAMILY_CLASSES[name]()
    if not instance or spread == 0:
        return base
    other = FAMILY_CLASSES[name](seed=FAMILY_SEEDS[name] ^ zlib.crc32(instance.encode()))
    inst = FAMILY_CLASSES[name].__new__(FAMILY_CLASSES[name])
    for key, value in vars(base).items():
        setattr(inst, key, _between(value, vars(other)[key], spread))
    if hasattr(inst, "enc") and hasattr(inst, "dec"):
        inst.dec = torch.linalg.pinv(inst.enc)  # the decoder stays the encoder's inverse
    return inst


def _between(a, b, t: float):
    """a moved a share t towards b, for the parameter types families hold (floats, tensors, lists of tensors)."""
    if isinstance(a, torch.Tensor) and a.is_floating_point():
        return (1 - t) * a + t * b
    if isinstance(a, float):
        return (1 - t) * a + t * b
    if isinstance(a, list):
        return [_between(x, y, t) for x, y in zip(a, b)]
    return a  # integers (codebook size), generators: architecture, not learned


MARGIN = 16  # px of mirrored content around the image while the fingerprint is computed (a multiple of 8)


def _parts(name: str, c: torch.Tensor, rng: np.random.Generator, instance: str = "",
           spread: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """High-passed deterministic part and noise of family `name` for content c, before calibration.

    The pipeline runs on the content extended by a mirrored margin that is cropped afterwards: otherwise the
    image border would cut the family's periodic pattern at a phase of its own, and the high-pass would turn
    that into a systematic, low-frequency (thumbnail-visible) border signature of the family."""
    fam = family(name, instance, spread)
    m = MARGIN if c.shape[-1] > MARGIN else 8   # a mirror needs a margin smaller than the image
    big = F.pad(c, (m, m, m, m), mode="reflect")
    crop = (Ellipsis, slice(m, -m), slice(m, -m))
    det = highpass(fam.deterministic(big, rng))[crop]
    noise = highpass(fam.noise(tuple(big.shape), rng))[crop] if NOISE_SHARE[name] > 0 else None
    return det, noise


@functools.lru_cache(maxsize=None)
def _calibration_content(size: int) -> tuple[torch.Tensor, dict]:
    """The calibration batch's content at this image size and the state of its random stream after drawing it.
    The same for every family and cell: drawn once per size, not once per calibrated cell model (the default
    benchmark calibrates 48: 6 families x 8 subclasses' cells)."""
    rng = np.random.default_rng(20240601)
    # an RMS over pixels: large images need fewer of them (the pixel count of 96 images of 64 px, 2-12 per subclass)
    n = min(CALIBRATION_N, max(2 * len(SUBCLASS_DRAWERS), CALIBRATION_N * 64 * 64 // (size * size)))
    per = n // len(SUBCLASS_DRAWERS)
    c = torch.cat([draw(sc, per, size, rng)[0] for sc in SUBCLASS_DRAWERS])
    return c, rng.bit_generator.state


def _calibration_batch(size: int) -> tuple[torch.Tensor, np.random.Generator]:
    """The calibration content (shared, not to be modified) and a fresh copy of its stream after the drawing:
    the family's noise draws continue it."""
    c, state = _calibration_content(size)
    bits = np.random.PCG64()
    bits.state = state
    return c, np.random.Generator(bits)


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """What a calibration depends on besides its arguments: the simulator's source, the numeric libraries' versions
    and the CPU's kind and vector extensions (a folder shared by other machines is read only by its own kind). A
    change of any makes a new cache folder (the old one is never read again)."""
    h = hashlib.sha256(f"{torch.__version__} {np.__version__} {platform.machine()} "
                       f"{torch.backends.cpu.get_cpu_capability()}".encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


_ANNOTATED = {"float": float, "int": int, "str": str}


def _same(value):
    return value


def _shared(fn):
    """Cache `fn`'s result (floats) in this process and in a file per argument tuple under $ATTRLIB_CACHE_DIR
    (default ~/.cache/attrlib), so that another process (a study's lane, a notebook's kernel, `attrlib synth`
    again) reads what one computed: a calibration runs the family's pipeline on a fixed batch, a few seconds
    per family and size. The value read is the one written (JSON keeps a float's every bit), so images are
    byte-identical either way. A file that cannot be read or written is recomputed or left out, never fatal."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)  # one key however it is called (positional, keywords, defaults)
        bound.apply_defaults()
        # and whatever the argument's type: a spread of 0 is 0.0 (the annotations are strings: `annotations`)
        return cached(*(_ANNOTATED.get(signature.parameters[name].annotation, _same)(value)
                        for name, value in bound.arguments.items()))

    @functools.lru_cache(maxsize=None)
    def cached(*args):
        try:  # a folder that cannot be named (no home directory) is left out
            root = cache_root()
            key = hashlib.sha256(repr((fn.__name__, args)).encode()).hexdigest()[:24]
            path = root / f"calibration-{_code_digest()}" / f"{fn.__name__}-{key}.json"
        except (OSError, RuntimeError):
            path = None
        if path is not None:
            try:
                stored = json.loads(path.read_text())
                if stored["args"] == list(args):
                    value = stored["value"]
                    return tuple(value) if isinstance(value, list) else float(value)
            except (OSError, ValueError, KeyError, TypeError):
                pass
        value = fn(*args)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(path, json.dumps({"args": list(args), "value": value}))
            except OSError:
                pass
        return value
    call.cache_clear = cached.cache_clear
    return call


@_shared
def calibration(name: str, size: int, instance: str = "", spread: float = 0.0) -> tuple[float, float]:
    """(a_g, b_g): RMS of the high-passed deterministic part and of the high-passed noise on a fixed batch
    of content of every subclass at this image size. Dividing by them makes every family equally loud."""
    c, rng = _calibration_batch(size)
    det, noise = _parts(name, c, rng, instance, spread)
    a = float(det.pow(2).mean().sqrt())
    b = float(noise.pow(2).mean().sqrt()) if noise is not None else 1.0
    return max(a, 1e-12), max(b, 1e-12)


def residual(name: str, c: torch.Tensor, rng: np.random.Generator, instance: str = "",
             spread: float = 0.0) -> torch.Tensor:
    """R_g(c): the family's (or its instance's) fingerprint for clean images c (B, 3, S, S), unit RMS on average."""
    a, b = calibration(name, c.shape[-1], instance, spread)
    rho = NOISE_SHARE[name]
    det, noise = _parts(name, c, rng, instance, spread)
    r = math.sqrt(1 - rho ** 2) / a * det
    if noise is not None:
        r = r + rho / b * noise
    return r


def render(name: str, c: torch.Tensor, strength: float, rng: np.random.Generator, instance: str = "",
           spread: float = 0.0, trace: str = "additive") -> np.ndarray:
    """The family's 8-bit images (B, S, S, 3) uint8 for clean content c, at fingerprint strength s (grey levels
    RMS). trace "additive": 255 c + s R_g(c), and at s = 0 round(255 c) whatever the family; "pipeline": the
    whole image through the family's pipeline (`pipeline_image`), at s = 0 the same image for every family.
    Both draw the same random numbers, so a stream gives the same content and noise in either."""
    # float64 throughout: float32 sums depend on the thread count and would flip the rounding of a few
    # pixels from one machine to the next; the benchmark must be byte-identical for a seed
    if trace == "pipeline":
        if strength > 0:
            r = residual(name, c, rng, instance, spread)
            x = pipeline_image(c, r, strength * pipeline_calibration(name, c.shape[-1], instance, spread,
                                                                     float(strength)))
        else:
            x = pipeline_image(c, None, 0.0)
    elif trace == "additive":
        x = c.double() * 255.0
        if strength > 0:
            x = x + strength * residual(name, c, rng, instance, spread)
    else:
        raise ValueError(f"trace {trace!r}; valid: {', '.join(TRACES)}")
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


# ------------------------------------------------------------------------------------- the pipeline trace
def luminance_gain(c: torch.Tensor) -> torch.Tensor:
    """M(c) (B, 1, S, S): the local luminance (Rec. 601 luma blurred with sigma PIPELINE_GAIN_SIGMA) over the
    image's mean luma, to the power PIPELINE_GAIN_POWER, clipped to PIPELINE_GAIN_RANGE: detail and trace are
    stronger where the image is bright."""
    luma = (c.double() * c.new_tensor(LUMA_WEIGHTS, dtype=torch.float64).view(1, 3, 1, 1)).sum(1, keepdim=True)
    local = _sep(luma, _gauss_kernel1d(PIPELINE_GAIN_SIGMA))
    mean = luma.mean(dim=(-2, -1), keepdim=True).clamp_min(1e-3)
    return (local / mean).pow(PIPELINE_GAIN_POWER).clamp(*PIPELINE_GAIN_RANGE)


def saturate(h: torch.Tensor) -> torch.Tensor:
    """T(h) = A tanh(h / A), A = PIPELINE_SATURATION grey levels: the pipeline's soft saturation of the high band."""
    return PIPELINE_SATURATION * torch.tanh(h / PIPELINE_SATURATION)


def pipeline_image(c: torch.Tensor, r: torch.Tensor | None, gain: float) -> torch.Tensor:
    """x = LP(255 c) + HP( M(c) T(HP(255 c) + gain R) ) in grey levels (B, 3, S, S), float64, before rounding;
    r None (strength 0): the family-free image, the same for every family."""
    x = c.double() * 255.0
    h = highpass(x)
    low = x - h
    if r is not None:
        h = h + gain * r
    return low + highpass(luminance_gain(c) * saturate(h))


@_shared
def pipeline_calibration(name: str, size: int, instance: str = "", spread: float = 0.0,
                         strength: float = 1.0) -> float:
    """kappa_g(s): the gain on R_g that makes the pipeline trace (x_g - x_0: the image minus the family-free
    image, before rounding) s grey levels RMS on the batch `calibration` uses, as the additive path's a_g, b_g
    make R_g unit RMS. The saturation makes the trace's RMS nonlinear in the gain (a trace that opposes the
    content's detail, such as guided_diffusion's high-frequency deficit, takes edges out of saturation and
    grows faster than linearly), so kappa is solved at each strength by fixed-point steps from the
    small-signal value 1 / RMS(HP(M T'(h) R_g))."""
    c, rng = _calibration_batch(size)
    r = residual(name, c, rng, instance, spread)
    slope = 1.0 - torch.tanh(highpass(c.double() * 255.0) / PIPELINE_SATURATION).pow(2)   # T'(h)
    kappa = 1.0 / max(float(highpass(luminance_gain(c) * slope * r).pow(2).mean().sqrt()), 1e-12)
    if strength <= 0:
        return kappa
    x0 = pipeline_image(c, None, 0.0)
    for _ in range(PIPELINE_CALIBRATION_STEPS):
        rms = float((pipeline_image(c, r, kappa * strength) - x0).pow(2).mean().sqrt())
        kappa *= strength / max(rms, 1e-12)
    return kappa
