"""Image statistics of a benchmark (or any data folder): no training, no model.

- `thumbnail_check`: logistic regression on 8x8 thumbnails predicts the subclass almost perfectly but the
  generator at chance on the unbiased variant (content is the shortcut; the fingerprint is high-frequency).
- `residual_spectra` / `spectra_distinctness`: per-generator mean log-magnitude spectrum of image minus
  denoised image, and how far apart those spectra are.
- `pixel_stats`: per-generator pixel mean, std and histogram distance (no brightness cue).

Images are decoded by the data layer (`attrlib.data.load_image`: any mode, any size) and centre-cropped to
the size all of them share, so a folder of mixed sizes works. The benchmark's images all have one size:
for them the crop is the whole image. The verdicts on these numbers (thresholds) are the study's checks,
`attrlib.study.checks`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..data import image_size, load_image


# ------------------------------------------------------------------------------------------------ loading
def _frame(root_or_frame, split: str | Iterable[str] | None = None) -> pd.DataFrame:
    """A manifest frame with absolute paths, from a benchmark folder or an existing frame."""
    if isinstance(root_or_frame, pd.DataFrame):
        frame = root_or_frame.copy()
    else:
        root = Path(root_or_frame)
        frame = pd.read_csv(root / "manifest.csv", keep_default_na=False)
        frame["path"] = [str(root / p) for p in frame["path"]]
    if split is not None and "split" in frame:
        splits = [split] if isinstance(split, str) else list(split)
        frame = frame[frame["split"].isin(splits)]
    return frame.reset_index(drop=True)


def common_size(paths: Iterable[str]) -> tuple[int, int]:
    """(height, width) every image of `paths` has at least (read from the headers, nothing decoded)."""
    sizes = [image_size(p) for p in paths]
    if not sizes:
        raise ValueError("no images to measure: the frame (or its split) is empty")
    return min(h for h, _ in sizes), min(w for _, w in sizes)


def load_images(paths: Iterable[str], size: tuple[int, int] | None = None) -> np.ndarray:
    """(N, H, W, 3) uint8: each image decoded by `attrlib.data.load_image` and centre-cropped to `size`
    (default: the size all of them share)."""
    paths = list(paths)
    h, w = size or common_size(paths)
    out = []
    for p in paths:
        img = load_image(p)
        top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        out.append(img[top:top + h, left:left + w])
    return np.stack(out)


def _sample(frame: pd.DataFrame, per_generator: int | None, seed: int = 0) -> pd.DataFrame:
    if per_generator is None:
        return frame
    parts = [f.sample(min(len(f), per_generator), random_state=seed) for _, f in frame.groupby("generator")]
    return pd.concat(parts).reset_index(drop=True)


# ----------------------------------------------------------------------------------------------- statistics
def thumbnail_check(root_or_frame, thumb: int = 8, seed: int = 0) -> dict:
    """Fit logistic regression on `thumb` x `thumb` area-averaged thumbnails of the train split and report
    val accuracy for subclass and for generator (with chance levels). On the unbiased variant the subclass
    should be near 1 and the generator near chance: the content shortcut is low-frequency, the fingerprint
    is not."""
    frame = _frame(root_or_frame)
    train, val = frame[frame["split"] == "train"], frame[frame["split"] == "val"]
    h, w = common_size(frame["path"])
    size = (h - h % thumb, w - w % thumb)  # whole thumbnail cells

    def thumbs(f):
        x = load_images(f["path"], size).astype(np.float32) / 255
        n, h, w, c = x.shape
        return x.reshape(n, thumb, h // thumb, thumb, w // thumb, c).mean(axis=(2, 4)).reshape(n, -1)

    xtr, xva = thumbs(train), thumbs(val)
    out = {"n_train": len(train), "n_val": len(val)}
    for target in ("subclass", "generator"):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed))
        clf.fit(xtr, train[target])
        out[f"{target}_accuracy"] = float((clf.predict(xva) == val[target].to_numpy()).mean())
        out[f"{target}_chance"] = float(val[target].value_counts(normalize=True).max())
    return out


def _denoise(x: np.ndarray, method: str) -> np.ndarray:
    if method == "median3":
        return ndimage.median_filter(x, size=(1, 3, 3, 1), mode="reflect")
    if method == "gaussian":
        return ndimage.gaussian_filter(x, sigma=(0, 1.0, 1.0, 0), mode="reflect")
    raise ValueError(f"unknown denoiser {method!r}; valid: median3, gaussian")


def residual_spectra(root_or_frame, split: str | None = None, per_generator: int | None = 200,
                     denoise: str = "median3", seed: int = 0) -> dict[str, np.ndarray]:
    """Per generator: mean over images and channels of log|FFT(x - denoise(x))|, centred (fftshift), HxW
    (the size all sampled images share).

    Periodic upsampling artifacts show as peaks at multiples of 1/f cycles/pixel, spectral deficits and cliffs
    as dark rings near the border (benchmark.md check 4; notebook 01 plots it)."""
    frame = _sample(_frame(root_or_frame, split), per_generator, seed)
    size = common_size(frame["path"])
    out = {}
    for g, f in frame.groupby("generator"):
        x = load_images(f["path"], size).astype(np.float32)
        r = x - _denoise(x, denoise)
        spec = np.abs(np.fft.fft2(r, axes=(1, 2)))
        out[g] = np.fft.fftshift(np.log(spec + 1e-3).mean(axis=(0, 3)))
    return dict(sorted(out.items()))


def spectra_distinctness(spectra: dict[str, np.ndarray]) -> pd.DataFrame:
    """Pairwise RMS difference between the generators' mean log spectra (0 would be indistinguishable)."""
    names = list(spectra)
    d = np.array([[float(np.sqrt(np.mean((spectra[a] - spectra[b]) ** 2))) for b in names] for a in names])
    return pd.DataFrame(d, index=names, columns=names)


def pixel_stats(root_or_frame, split: str | None = None, per_generator: int | None = None,
                bins: int = 32, seed: int = 0) -> pd.DataFrame:
    """Per generator: pixel mean and std (0-255, all channels), per-channel means, and the total-variation
    distance between its grey-level histogram and the pooled one (`hist_tv`, 0 = identical)."""
    frame = _sample(_frame(root_or_frame, split), per_generator, seed)
    size = common_size(frame["path"])
    hists, rows = {}, []
    for g, f in frame.groupby("generator"):
        x = load_images(f["path"], size).astype(np.float64)
        hists[g] = np.histogram(x, bins=bins, range=(0, 256))[0].astype(np.float64)
        rows.append(dict(generator=g, n=len(f), mean=x.mean(), std=x.std(), mean_r=x[..., 0].mean(),
                         mean_g=x[..., 1].mean(), mean_b=x[..., 2].mean()))
    pooled = sum(hists.values())
    pooled = pooled / pooled.sum()
    for row in rows:
        h = hists[row["generator"]]
        row["hist_tv"] = 0.5 * float(np.abs(h / h.sum() - pooled).sum())
    return pd.DataFrame(rows).set_index("generator")
