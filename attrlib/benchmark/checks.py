"""The checks that make the SIMULATED benchmark trustworthy (benchmark.md, "Checks"), as functions.

Training checks (they call the study's one engine, `attrlib.engine.train`, and read its metrics.json):

1. `check_strength_zero`: strength 0, unbiased training -> held-out accuracy at chance (nothing leaks
   through content, file format or ordering).
2. `check_unbiased`: default strength, unbiased training -> high held-out accuracy (the fingerprint is
   learnable and does not depend on the subclass).
4'. `check_biased_baseline`: default strength, plain ERM on the biased variant -> high in-distribution
   validation accuracy but held-out accuracy near seed 002's 0.49 (the benchmark reproduces the problem).
   `strength_sweep` gives held-out accuracy against strength for biased and unbiased training.

Checks without training:

3. `thumbnail_check`: logistic regression on 8x8 thumbnails predicts the subclass almost perfectly but the
   generator at chance on the unbiased variant (content is the shortcut; the fingerprint is high-frequency).
4. `residual_spectra`: per-generator mean log-magnitude spectrum of image minus denoised image.
5. `pixel_stats` / `histograms`: per-generator pixel mean, std and histogram match (no brightness cue).

`run_checks` runs them all and returns a table of measured value, threshold and verdict.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .synth import DEFAULT_INSTANCE_SPREAD, DEFAULT_STRENGTH, GENERATOR_VERSION, synthesize

# Thresholds of the issue. Chance for 6 generators is 1/6; 0.25 leaves room for the noise of 176 test images.
CHANCE_MAX = 0.25
UNBIASED_MIN = 0.90
THUMB_SUBCLASS_MIN = 0.98
BIASED_VAL_MIN = 0.90
BIASED_HELDOUT_WINDOW = (0.35, 0.65)   # around seed 002's baseline accuracy, 0.49


# ------------------------------------------------------------------------------------------------ loading
def _frame(root_or_frame, split: str | Iterable[str] | None = None) -> tuple[pd.DataFrame, Path | None]:
    """A manifest frame with absolute paths, from a benchmark folder or an existing frame."""
    if isinstance(root_or_frame, pd.DataFrame):
        frame, root = root_or_frame.copy(), None
    else:
        root = Path(root_or_frame)
        frame = pd.read_csv(root / "manifest.csv", keep_default_na=False)
        frame["path"] = [str(root / p) for p in frame["path"]]
    if split is not None and "split" in frame:
        splits = [split] if isinstance(split, str) else list(split)
        frame = frame[frame["split"].isin(splits)]
    return frame.reset_index(drop=True), root


def load_images(paths: Iterable[str]) -> np.ndarray:
    """(N, H, W, 3) uint8 from image files (all of one size, as the benchmark's are)."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def _sample(frame: pd.DataFrame, per_generator: int | None, seed: int = 0) -> pd.DataFrame:
    if per_generator is None:
        return frame
    parts = [f.sample(min(len(f), per_generator), random_state=seed) for _, f in frame.groupby("generator")]
    return pd.concat(parts).reset_index(drop=True)


# ------------------------------------------------------------------------------------------- no training
def thumbnail_check(root_or_frame, thumb: int = 8, seed: int = 0) -> dict:
    """Fit logistic regression on `thumb` x `thumb` area-averaged thumbnails of the train split and report
    val accuracy for subclass and for generator (with chance levels). On the unbiased variant the subclass
    should be near 1 and the generator near chance: the content shortcut is low-frequency, the fingerprint
    is not."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame, _ = _frame(root_or_frame)
    train, val = frame[frame["split"] == "train"], frame[frame["split"] == "val"]

    def thumbs(f):
        x = load_images(f["path"]).astype(np.float32) / 255
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
    from scipy import ndimage

    if method == "median3":
        return ndimage.median_filter(x, size=(1, 3, 3, 1), mode="reflect")
    if method == "gaussian":
        return ndimage.gaussian_filter(x, sigma=(0, 1.0, 1.0, 0), mode="reflect")
    raise ValueError(f"unknown denoiser {method!r}; valid: median3, gaussian")


def residual_spectra(root_or_frame, split: str | None = None, per_generator: int | None = 200,
                     denoise: str = "median3", seed: int = 0) -> dict[str, np.ndarray]:
    """Per generator: mean over images and channels of log|FFT(x - denoise(x))|, centred (fftshift), HxW.

    Periodic upsampling artifacts show as peaks at multiples of 1/f cycles/pixel, spectral deficits and cliffs
    as dark rings near the border (benchmark.md check 4; notebook 01 plots it)."""
    frame, _ = _frame(root_or_frame, split)
    frame = _sample(frame, per_generator, seed)
    out = {}
    for g, f in frame.groupby("generator"):
        x = load_images(f["path"]).astype(np.float32)
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
    frame, _ = _frame(root_or_frame, split)
    frame = _sample(frame, per_generator, seed)
    hists, rows = {}, []
    for g, f in frame.groupby("generator"):
        x = load_images(f["path"]).astype(np.float64)
        hists[g] = np.histogram(x, bins=bins, range=(0, 256))[0].astype(np.float64)
        rows.append(dict(generator=g, n=len(f), mean=x.mean(), std=x.std(), mean_r=x[..., 0].mean(),
                         mean_g=x[..., 1].mean(), mean_b=x[..., 2].mean()))
    pooled = sum(hists.values())
    pooled = pooled / pooled.sum()
    for row in rows:
        h = hists[row["generator"]]
        row["hist_tv"] = 0.5 * float(np.abs(h / h.sum() - pooled).sum())
    return pd.DataFrame(rows).set_index("generator")


# ---------------------------------------------------------------------------------------------- training

def check_benchmark(data_dir: str | os.PathLike, variant: str, strength: float, seed: int = 0, scale: float = 1 / 50,
                    size: int = 64, instance_spread: float = DEFAULT_INSTANCE_SPREAD, progress: bool = False,
                    reuse: Iterable[str | os.PathLike] = ()) -> Path:
    """The benchmark a check trains or measures on, cached under `data_dir` by its parameters; or one of the
    `reuse` folders (the study's own benchmark and its unbiased twin) when it was made with the same ones."""
    wanted = dict(variant=variant, strength=float(strength), seed=seed, scale=float(scale), size=size,
                  instance_spread=float(instance_spread), generator_version=GENERATOR_VERSION)
    for root in reuse:
        try:
            made = json.loads((Path(root) / "benchmark.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        # the realistic variant has the same parameters but other files: never a check's benchmark
        if all(made.get(k) == v for k, v in wanted.items()) and "realistic" not in made:
            return Path(root)
    name = f"{variant}-s{strength:g}-i{instance_spread:g}-n{size}-scale{scale:g}-seed{seed}"
    return synthesize(Path(data_dir) / name, scale=scale, size=size, strength=strength, seed=seed, variant=variant,
                      instance_spread=instance_spread, progress=progress)

def train_benchmark(strength: float, variant: str, seed: int = 0, data_dir: str | os.PathLike = "data/checks",
                    scale: float = 1 / 50, size: int = 64, progress: bool = False,
                    instance_spread: float = DEFAULT_INSTANCE_SPREAD, reuse: Iterable[str | os.PathLike] = (),
                    **config) -> dict:
    """Synthesise the benchmark at `strength` and `variant` (or reuse an identical one, see `check_benchmark`),
    train with the study's engine (`Config` fields in `config`, e.g. technique="baseline", epochs=12) and
    return val and held-out accuracy. On reused data the run is reused too (run ids hash the data's
    benchmark.json, not its path)."""
    from ..config import Config
    from ..sweep import train

    root = check_benchmark(data_dir, variant, strength, seed, scale, size, instance_spread, progress, reuse)
    cfg = Config(**{"data": str(root), "seed": seed, **config})
    run = Path(train(cfg, progress=progress))
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    return {"strength": strength, "instance_spread": instance_spread, "variant": variant, "seed": seed,
            "val_accuracy": _get(metrics, "val.accuracy"), "heldout_accuracy": _get(metrics, "heldout.accuracy"),
            "run": str(run)}


def _get(metrics: dict, dotted: str) -> float:
    """metrics["heldout"]["accuracy"] for "heldout.accuracy" (or a flat "heldout.accuracy" key); NaN if absent."""
    if dotted in metrics:
        return metrics[dotted]
    node = metrics
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return float("nan")
        node = node[key]
    return node


def strength_sweep(strengths: Iterable[float] = (0.0, 0.75, 1.5, 3.0),
                   variants: Iterable[str] = ("biased", "unbiased"), seeds: Iterable[int] = (0,),
                   **kwargs) -> pd.DataFrame:
    """Held-out (and val) accuracy against fingerprint strength for biased and unbiased training: one row
    per strength, variant and seed (notebook 01 plots it)."""
    rows = [train_benchmark(s, v, seed=seed, **kwargs) for s in strengths for v in variants for seed in seeds]
    return pd.DataFrame(rows)


def check_strength_zero(seed: int = 0, **kwargs) -> dict:
    r = train_benchmark(0.0, "unbiased", seed=seed, **kwargs)
    return {**r, "check": "1 strength 0, unbiased -> held-out at chance", "threshold": f"<= {CHANCE_MAX}",
            "passed": bool(r["heldout_accuracy"] <= CHANCE_MAX)}


def check_unbiased(strength: float = DEFAULT_STRENGTH, seed: int = 0, **kwargs) -> dict:
    r = train_benchmark(strength, "unbiased", seed=seed, **kwargs)
    return {**r, "check": "2 default strength, unbiased -> held-out high", "threshold": f">= {UNBIASED_MIN}",
            "passed": bool(r["heldout_accuracy"] >= UNBIASED_MIN)}


def check_biased_baseline(strength: float = DEFAULT_STRENGTH, seed: int = 0, **kwargs) -> dict:
    r = train_benchmark(strength, "biased", seed=seed, **kwargs)
    lo, hi = BIASED_HELDOUT_WINDOW
    return {**r, "check": "4' default strength, biased ERM -> val high, held-out near seed 002's 0.49",
            "threshold": f"val >= {BIASED_VAL_MIN}, {lo} <= held-out <= {hi}",
            "passed": bool(r["val_accuracy"] >= BIASED_VAL_MIN and lo <= r["heldout_accuracy"] <= hi)}


def check_thumbnails(data_dir: str | os.PathLike = "data/checks", strength: float = DEFAULT_STRENGTH,
                     seed: int = 0, scale: float = 1 / 50, size: int = 64,
                     instance_spread: float = DEFAULT_INSTANCE_SPREAD, reuse: Iterable[str | os.PathLike] = ()) -> dict:
    root = check_benchmark(data_dir, "unbiased", strength, seed, scale, size, instance_spread, reuse=reuse)
    r = thumbnail_check(root, seed=seed)
    passed = r["subclass_accuracy"] >= THUMB_SUBCLASS_MIN and r["generator_accuracy"] <= CHANCE_MAX
    return {**r, "check": "3 8x8 thumbnails: subclass high, generator at chance",
            "threshold": f"subclass >= {THUMB_SUBCLASS_MIN}, generator <= {CHANCE_MAX}", "passed": bool(passed)}


def check_pixel_stats(data_dir: str | os.PathLike = "data/checks", strength: float = DEFAULT_STRENGTH,
                      seed: int = 0, scale: float = 1 / 50, size: int = 64,
                      instance_spread: float = DEFAULT_INSTANCE_SPREAD, max_mean_gap: float = 2.0,
                      max_hist_tv: float = 0.05, reuse: Iterable[str | os.PathLike] = ()) -> dict:
    """Check 5 on the unbiased variant (where every generator has the same content): per-generator means
    within `max_mean_gap` grey levels of each other and histograms within `max_hist_tv` of the pooled one."""
    root = check_benchmark(data_dir, "unbiased", strength, seed, scale, size, instance_spread, reuse=reuse)
    stats = pixel_stats(root)
    gap = float(stats["mean"].max() - stats["mean"].min())
    tv = float(stats["hist_tv"].max())
    return {"check": "5 per-generator pixel statistics match", "mean_gap": gap, "std_gap":
            float(stats["std"].max() - stats["std"].min()), "max_hist_tv": tv,
            "threshold": f"mean gap <= {max_mean_gap}, hist TV <= {max_hist_tv}",
            "passed": bool(gap <= max_mean_gap and tv <= max_hist_tv)}


def run_checks(seed: int = 0, train: bool = True, **kwargs) -> pd.DataFrame:
    """All checks, one row each (training checks only when `train`)."""
    data_dir = kwargs.get("data_dir", "data/checks")
    rows = [check_thumbnails(data_dir, seed=seed), check_pixel_stats(data_dir, seed=seed)]
    if train:
        rows += [check_strength_zero(seed=seed, **kwargs), check_unbiased(seed=seed, **kwargs),
                 check_biased_baseline(seed=seed, **kwargs)]
    cols = ["check", "threshold", "passed"]
    frame = pd.DataFrame(rows)
    return frame[cols + [c for c in frame.columns if c not in cols]]


def checks_table(sweep: pd.DataFrame, spec: dict, strength: float = DEFAULT_STRENGTH) -> pd.DataFrame:
    """The five checks as one table, reading the training checks (1, 2, 4) off a `strength_sweep` result
    (mean over its seeds) and running the two data checks (3, 5) on the unbiased benchmark of the same
    scale and size. `spec` is what `attrlib.study.benchmark_spec` returns."""
    def point(s: float, variant: str) -> pd.DataFrame:
        rows = sweep[(sweep.variant == variant) & np.isclose(sweep.strength, s)]
        if rows.empty:
            raise ValueError(f"the sweep has no {variant} run at strength {s:g}; include it in the strengths")
        return rows

    zero, unbiased, biased = point(0.0, "unbiased"), point(strength, "unbiased"), point(strength, "biased")
    lo, hi = BIASED_HELDOUT_WINDOW
    data = dict(data_dir=spec.get("data_dir", "data/checks"), strength=strength, scale=spec["scale"], size=spec["size"],
                instance_spread=spec.get("instance_spread", DEFAULT_INSTANCE_SPREAD), reuse=spec.get("reuse", ()))
    thumbs, stats = check_thumbnails(**data), check_pixel_stats(**data)
    rows = [
        dict(check="1 strength 0, unbiased training: held-out at chance", threshold=f"held-out <= {CHANCE_MAX}",
             measured=f"held-out {zero.heldout_accuracy.mean():.3f}", passed=bool(zero.heldout_accuracy.mean() <= CHANCE_MAX)),
        dict(check=f"2 strength {strength:g}, unbiased training: fingerprint learnable", threshold=f"held-out >= {UNBIASED_MIN}",
             measured=f"held-out {unbiased.heldout_accuracy.mean():.3f}",
             passed=bool(unbiased.heldout_accuracy.mean() >= UNBIASED_MIN)),
        dict(check="3 8x8 thumbnails: subclass easy, generator at chance", threshold=thumbs["threshold"],
             measured=f"subclass {thumbs['subclass_accuracy']:.3f}, generator {thumbs['generator_accuracy']:.3f}",
             passed=thumbs["passed"]),
        dict(check=f"4 strength {strength:g}, biased ERM: fits val, fails held-out like seed 002 (0.49)",
             threshold=f"val >= {BIASED_VAL_MIN}, {lo} <= held-out <= {hi}",
             measured=f"val {biased.val_accuracy.mean():.3f}, held-out {biased.heldout_accuracy.mean():.3f}",
             passed=bool(biased.val_accuracy.mean() >= BIASED_VAL_MIN and lo <= biased.heldout_accuracy.mean() <= hi)),
        dict(check="5 per-generator pixel statistics match (unbiased)", threshold=stats["threshold"],
             measured=f"mean gap {stats['mean_gap']:.2f}, hist TV {stats['max_hist_tv']:.3f}", passed=stats["passed"]),
    ]
    seeds = sorted(set(sweep.seed))
    return pd.DataFrame(rows).assign(seeds=", ".join(map(str, seeds)))
